"""Working sets over feature groups: solve on the features that can be non-zero, certify the rest at zero.

Whether a feature left out is optimal at zero is decided by an edge certificate
(:func:`s3r.solver.certificates.check_excluded`), which may keep a feature unnecessarily, never drop one wrongly.

The outer loop (celer / skglm style): start from the unpenalised features and those non-zero in a warm start
(or, from a cold start, the strongest violators at W = 0 by a short certificate search — if none violates, W = 0
is returned without a solve), solve the restricted problem with the primal–dual solver, check every excluded
feature, add the worst violators (at most doubling the set), re-solve warm-started (W, data dual, the working set's
smoothness dual, step), until the check passes for all. Sets that may still grow are solved to ``COARSE_TOL``
only; once a check passes there, the set is solved to the tolerance and checked again — only that final check
decides convergence. In a batch the set is shared (the union of what its problems need) but the check is per
problem: a problem is checked as soon as it has converged on the current set, and is reported converged, its state
frozen, only once every feature excluded for it is certified at zero for it — so a slow problem neither keeps the set
from growing for the others nor lets one of them be reported converged on a set that is too small. The covariates
are set to their exact optimum at the final W. An inner solve that stopped on a stalled residual (the float32 stage
of ``mixed``) ends the loop for its problems, unconverged, so that the caller's float64 polish takes over.
With ``check_warm_start`` (callers that solve in capped chunks) a warm start's excluded features are checked before
the first solve too (a short search, ``WARM_CHECK_ITER``), and every feature it proves non-zero enters: a set reaches the
size its problem needs within a few chunks even where no chunk converges.

Memory: the restricted solves hold edges × |working set| duals; the certificate search works in chunks of
``certificates.CHUNK_ELEMS`` edge-sized entries. The returned ``dual`` is still edges × p (the solvers' warm-start contract).
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch

from s3r.solver.certificates import check_excluded, column_block, covariate_optimum, data_gradient
from s3r.solver.penalties import GraphL1, SparseGroupLasso
from s3r.solver.step_size import reference_step
from s3r.solver.result import SolveResult

MIN_SIZE = 8  # smallest working set and smallest number of features added per outer iteration
START_ITER = 30  # FISTA iterations of the first check, which only ranks the candidates
STALL_STOPS = True  # an inner solve that stopped on a stalled residual ends the outer loop for its problems
# FISTA iterations of a chunked caller's warm-start check: it only grows the set (a passing one decides nothing) and
# its certificates carry over to the next chunk's; with CERT_ITER it was 76 % of the tuning's fold job at 3·10⁴ spots
# (benchmarks/README.md, session 17)
WARM_CHECK_ITER = START_ITER
COARSE_TOL = 1e-3  # tolerance of the restricted solves until a check passes: only the last solve needs ``tol``


def solve_working_set(
    datafit, penalty: SparseGroupLasso, smooth, K, W0: torch.Tensor, gamma0, *, inner, v0=None, U0=None, tau0=None,
    tol: float = 1e-6, max_iter: int = 50_000, callback=None, min_size: int | None = None, own_U0: bool = False,
    own_W0: bool = False, check_warm_start: bool = False,
) -> SolveResult:
    """Outer working-set loop around ``inner`` (the primal–dual solver with its usual signature).

    ``datafit`` and ``penalty`` describe the full problem; restricted copies are built per working set.
    ``own_U0``: the caller hands ``U0`` over (a tensor it made for this call, such as a prolongated coarse dual), so
    the returned edges × p dual is written into it instead of a second one (10⁵ spots × 1,000 features: 1.6 GB).
    ``own_W0``: the same for ``W0`` (a prolongated coarse solution): the iterate is kept in it, not in a copy
    (n × p: 0.4 GB at 10⁵ × 1,000 in float32).
    """
    start = time.perf_counter()
    min_size = MIN_SIZE if min_size is None else min_size
    n, B, p = W0.shape
    X, free = datafit.X, penalty.free.squeeze(-1)
    hooks = {"gradients": datafit.column_gradients, "row_weight": penalty.row_weight}  # rows of W may be aggregates
    factor = penalty.factor
    smooth_l1 = isinstance(smooth, GraphL1) and K is not None
    lam = smooth.lam.view(-1) if smooth_l1 else None
    K_check = K if smooth_l1 else None
    # the edge certificates of the excluded columns, kept from check to check (float16: a start for the search, which
    # verifies it; m × B × p half-precision numbers). Seeded by a warm start's smoothness dual on every column (the
    # constant start's flow certifies every zero column of a fused map: 10⁴ × 1,000, 3 × 300 FISTA iterations → 0).
    # 10⁴ × 1,000, medium penalties: the fine level's four checks took ~2,500 FISTA iterations and 65 CPU s each.
    certificates = None
    if K_check is not None:
        certificates = torch.zeros((K_check.shape[0], B, p), dtype=torch.float16, device=W0.device)
        if U0 is not None and U0.shape[-1] == p:
            inv = torch.where(lam > 0, 1.0 / torch.clamp(lam, min=torch.finfo(lam.dtype).tiny), torch.zeros_like(lam)).view(1, -1, 1)
            block = column_block(K_check.shape[0], B)  # no edges × p temporary (10⁵ × 1,000: 1.6 GB)
            for lo in range(0, p, block):
                part = U0[:, :, lo:lo + block]
                certificates[:, :, lo:lo + block] = (part * inv.to(part.dtype)).clamp_(-1.0, 1.0)

    # the start: the features non-zero in a warm start (a good guess of the support: no check spent on it), else
    # the strongest violators at W0 by a short certificate search (a ranking; only the final check must be exact)
    nonzero = (W0 != 0).any(0).any(0).cpu().numpy()
    ws = nonzero | (factor == 0).cpu().numpy()
    checks = []
    checked = np.zeros(p, dtype=bool)  # columns some check has searched a certificate for (kept in ``certificates``)
    if not nonzero.any():
        rest = np.flatnonzero(~ws)
        checked[rest] = True
        viol, score, fista = check_excluded(X, data_gradient(datafit, W0, free), free, rest, penalty.alpha, penalty.beta, factor,
                                            K_check, lam, max_iter=START_ITER, certificates=certificates, **hooks)
        checks.append({"checked": int(rest.size), "violators": int(viol.sum()), "fista_iterations": fista})
        violators = np.flatnonzero(viol)
        ws[rest[_strongest(violators, score, max(min_size - int(ws.sum()), 0))]] = True
        if not viol.any():  # every feature certified at zero: W = 0 is the answer, no solve needed
            res = _zero_solution(datafit, penalty, K, W0, free, checks, time.perf_counter() - start)
            if res.dual is not None and certificates is not None:  # every column's dual is the certificate just found
                _excluded_duals(res.dual, np.zeros(0, dtype=np.int64), checked, certificates, U0, lam)
            return res
        if not ws.any():  # keep one feature so the restricted solve is never empty
            ws[rest[_strongest(violators, score, 1)]] = True
    elif check_warm_start and not ws.all():
        # a chunked caller's warm start: the last call may have ended unconverged, its set never checked. At 10⁵ spots,
        # where no 100-iteration chunk converges, the tuning's sets never grew past the start set without this; a check
        # that passes here decides nothing (only a converged solve on a set whose check passes is converged); off for
        # warm starts from converged solves (the polish, the next level), checked after their first converged solve
        rest = np.flatnonzero(~ws)
        checked[rest] = True
        proven = np.zeros(rest.size, dtype=bool)
        viol, score, fista = check_excluded(X, data_gradient(datafit, W0, free), free, rest, penalty.alpha, penalty.beta, factor,
                                            K_check, lam, max_iter=WARM_CHECK_ITER, certificates=certificates, proven=proven, **hooks)
        checks.append({"checked": int(rest.size), "violators": int(viol.sum()), "proven": int(proven.sum()),
                       "fista_iterations": fista, "start": True})
        # every column a witness proves non-zero enters, not at most a doubling: a chunked caller gets one such check per
        # chunk, and doubling from 8 held the tuning's 500-iteration solves to ≤ 128 of 2,000 features — truncated
        # models that the search then ranked, its winner 1.054 once solved on against 0.632 for the converged ranking's
        # (DLPFC, `features: all`; benchmarks/README.md, session 36). Columns the short search merely left uncertified
        # still enter at most a doubling: at 10⁴ spots 30 FISTA iterations certify almost none, and all of them
        # entering took 1,000 of 1,000 features into every capped solve.
        size = int(ws.sum())
        ws[rest[proven]] = True
        unsure = np.flatnonzero(viol & ~proven)
        ws[rest[_strongest(unsure, score, max(min_size, size))]] = True
    history = [int(ws.sum())]

    # the smoothness dual is kept for the working set's columns only (edges × |working set|, not edges × p); a column
    # that enters later takes the warm start's dual for it: a warm start's column at W0_j = 0 is left out of the first
    # set, and when the check misses its certificate (300 FISTA iterations from z = 0 do not cross a 10⁵-spot graph) it
    # came back with U_j = 0 and a rough W_j, which undid the warm start (the float32 → float64 polish at 10⁵ spots:
    # residuals 1.3e-5 → 5e-3 and 2,090 float64 iterations; benchmarks/README.md, session 12)
    # Each problem of the batch is certified on its own: once it has converged on the current set, its excluded
    # features are checked for it; if all are certified at zero it is done (its state frozen, reported converged),
    # else the features that violate for it grow the shared set and it is solved again, warm, with the others that
    # still need iterations — a slow problem no longer keeps the set from growing for the rest (benchmarks/README.md,
    # session 13: the tuning's chunked solves at batch ≥ 5 never grew a set and ended restricted to the start set).
    W, v, tau, gamma = (W0 if own_W0 else W0.clone()), v0, tau0, gamma0
    tau_ref = reference_step(datafit, smooth, K)  # the step balancing's anchor: the full problem's, not the restricted one's
    U_cols = np.zeros(0, dtype=np.int64)
    U = None
    if U0 is not None:
        U_cols = np.flatnonzero(ws)
        U = U0[:, :, torch.as_tensor(U_cols, device=U0.device)].contiguous()
    total_it = np.zeros(B, dtype=np.int64)
    done = np.zeros(B, dtype=bool)  # converged to ``tol`` and certified: frozen
    halted = np.zeros(B, dtype=bool)  # the inner solve stopped on a stalled residual: handed back (mixed: to the polish)
    fine = np.zeros(B, dtype=bool)  # passed a check at the coarse tolerance: solved to ``tol`` from now on
    stats = {k: np.full(B, np.nan) for k in ("objective", "primal_residual", "dual_residual", "step")}
    trace: list[dict] = []
    res = None
    outer = steps_run = 0
    while True:
        live = ~done & ~halted & ((total_it < max_iter) | (outer == 0))
        if not live.any():
            break
        outer += 1
        idx = np.flatnonzero(live)
        whole = idx.size == B
        it_t = torch.as_tensor(idx, device=X.device)
        sel = partial(_part, idx=None if whole else it_t)
        # a set that will still grow need not be solved to ``tol``: it only warm-starts the next
        tol_now = tol if bool(fine[idx].any()) else max(tol, COARSE_TOL)
        cols = np.flatnonzero(ws)
        J = torch.as_tensor(cols, device=X.device)
        sub_fit = datafit.restrict(J)
        sub_pen = SparseGroupLasso(penalty.alpha, penalty.beta, factor[J], datafit.n, free, row_weight=penalty.row_weight)
        budget = int(max_iter - total_it[idx].max())
        offset = steps_run  # iterations of the outer solves so far (trace and callback count on)
        wide = lambda e, o=offset, k=int(cols.size): {**_widen(e, idx, B), "iteration": e["iteration"] + o, "working_set": k}  # noqa: E731
        cb = None if callback is None else (lambda e: callback(wide(e)))
        if U is not None and U_cols.size != cols.size:  # new columns start at the warm start's dual for them, else zero
            grown = torch.zeros((U.shape[0], B, cols.size), dtype=U.dtype, device=U.device)
            if U0 is not None:
                grown.copy_(U0[:, :, J])
            grown[:, :, torch.as_tensor(np.searchsorted(cols, U_cols), device=U.device)] = U
            U, U_cols = grown, cols
        res = inner(
            sub_fit if whole else sub_fit.select(it_t), sub_pen if whole else sub_pen.select(it_t),
            smooth if whole or smooth is None else smooth.select(it_t), K, sel(W[:, :, J]).contiguous(), sel(gamma, 0),
            v0=sel(v), U0=sel(U), tau0=sel(tau, 0), tol=tol_now, max_iter=max(budget, 1), callback=cb, tau_ref=sel(tau_ref, 0),
        )
        total_it[idx] += np.asarray(res.iterations)
        steps_run += int(np.max(res.iterations))
        trace += [wide(e) for e in res.trace]
        # the columns outside the set are zero in W (the set holds every non-zero column of W0 and only grows), so
        # only the set's columns are written: no n × B × p temporary
        if whole:
            W[:, :, J] = res.W
        else:
            W[:, it_t.unsqueeze(1), J] = res.W
        step = torch.as_tensor(res.step, dtype=W0.dtype, device=W0.device)
        if whole:
            U, v, tau, gamma = res.dual, res.data_dual, step, res.gamma
        else:
            for T, new, axis in ((U, res.dual, 1), (v, res.data_dual, 1), (tau, step, 0), (gamma, res.gamma, 0)):
                if T is not None:
                    T.index_copy_(axis, it_t, new)
        U_cols = cols
        for k in stats:
            stats[k][idx] = np.asarray(getattr(res, k), dtype=np.float64)
        conv = np.asarray(res.converged, dtype=bool)
        if STALL_STOPS and any(e.get("stalled", False) for e in res.trace):
            # a stall stop is the caller's signal to change precision; solving again here restarted the float32
            # stage with a fresh step balancing until max_iter (three_regions σ 2: 20,000 float32 iterations, four
            # restarts, residuals 1.4e-4 → 2e-3; benchmarks/README.md, session 14)
            halted[idx[~conv]] = True
        ok = idx[conv]  # converged on this set: check their excluded features
        if ok.size == 0:
            continue
        rest = np.flatnonzero(~ws)
        viol, score = np.zeros((ok.size, 0), dtype=bool), np.zeros(0)
        if rest.size:
            # the problems checked: all of the batch (no copies: the certificate buffer is edges × B × p), or a part
            o_t = None if ok.size == B else torch.as_tensor(ok, device=X.device)
            pick = partial(_part, idx=o_t)
            grad = data_gradient(sub_fit if o_t is None else sub_fit.select(o_t), pick(W[:, :, J]), pick(free))
            checked[rest] = True
            cert = pick(certificates)
            viol, score, fista = check_excluded(X, grad, pick(free), rest, pick(penalty.alpha, 0), pick(penalty.beta, 0), factor,
                                                K_check, pick(lam, 0), certificates=cert, per_problem=True, **hooks)
            if cert is not None and o_t is not None:
                certificates.index_copy_(1, o_t, cert)
            checks.append({"checked": int(rest.size), "violators": int(viol.any(0).sum()), "fista_iterations": fista,
                           "problems": int(ok.size)})
        passed = ok[~viol.any(1)]
        if tol_now <= tol:
            done[passed] = True
        fine[passed] = True
        if viol.any():
            ws[rest[_strongest(np.flatnonzero(viol.any(0)), score, max(min_size, int(ws.sum())))]] = True
            history.append(int(ws.sum()))

    dual = None
    if U is not None:  # the solver's contract: an (m, B, p) dual
        reuse = own_U0 and U0 is not None and tuple(U0.shape) == (U.shape[0], B, p) and U0.dtype == U.dtype
        dual = U0 if reuse else torch.zeros((U.shape[0], B, p), dtype=U.dtype, device=U.device)
        if reuse and certificates is None:  # the columns outside the set were never checked: zero, as returned before
            dual.zero_()
        dual[:, :, torch.as_tensor(U_cols, device=U.device)] = U
        if certificates is not None:
            _excluded_duals(dual, U_cols, checked, certificates, U0, lam, in_place=reuse)
    if gamma is not None:  # the covariates' exact optimum at the final W (the solver's γ is within its tolerance)
        J = torch.as_tensor(np.flatnonzero(ws), device=X.device)
        fit = datafit.restrict(J)
        gamma = covariate_optimum(fit, fit.predict_w(W[:, :, J])).to(gamma.dtype)
    return SolveResult(
        W=W, gamma=gamma, dual=dual, data_dual=v, objective=stats["objective"],
        primal_residual=stats["primal_residual"], dual_residual=stats["dual_residual"], converged=done,
        iterations=np.minimum(total_it, max_iter), seconds=time.perf_counter() - start, method=res.method + "+working_set",
        step=stats["step"], trace=trace,
        working_set={
            "size": int(ws.sum()), "features": p, "outer_iterations": outer, "check_passed": bool(done.all()),
            "sizes": history, "checks": checks,
        },
    )


def _strongest(candidates: np.ndarray, score: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``candidates`` (positions into ``score``), the highest scores first: how every check grows
    the set — a cold start's first set up to ``min_size``, then (celer's rule) at most a doubling per check, so one
    check's unproven columns cannot flood the restricted solve."""
    return candidates[np.argsort(-score[candidates])[:limit]]


def _excluded_duals(dual, U_cols, checked, certificates, U0, lam, in_place: bool = False) -> None:
    """Fill the edge dual of the columns outside the final working set with the best one known: the certificate a
    check left for it (λ z, the dual that proves W_j = 0), else the warm start's dual for it.

    A column that leaves the set (or never enters it) at zero still has a dual at the optimum; returning zero
    for it made the next solve (the float64 polish of ``mixed``, the next coarse-to-fine level, the next CV
    chunk) start that column cold when it re-entered: 10⁵ spots, polish 2,090 float64 iterations from a first
    residual of 5e-3 (benchmarks/README.md, sessions 12–13).

    ``in_place``: ``dual`` is the warm start itself, whose never-checked columns already hold their values. Columns
    go in blocks (:func:`~s3r.solver.certificates.column_block`), so no second edges × p tensor is made on the way."""
    m, B, p = dual.shape
    out = np.setdiff1d(np.arange(p), U_cols)
    if out.size == 0:
        return
    from_cert = out[checked[out]] if U0 is not None and U0.shape[-1] == p else out
    rest = np.setdiff1d(out, from_cert)
    lam3 = lam.view(1, -1, 1).to(dual.dtype)
    block = column_block(m, B)
    for start in range(0, from_cert.size, block):
        J = torch.as_tensor(from_cert[start:start + block], device=dual.device)
        dual[:, :, J] = certificates[:, :, J].to(dual.dtype).mul_(lam3)
    if not in_place:  # never checked here: the warm start's own dual, at its full precision
        for start in range(0, rest.size, block):
            J = torch.as_tensor(rest[start:start + block], device=dual.device)
            dual[:, :, J] = U0[:, :, J].to(dual.dtype)


def _part(T: torch.Tensor | None, axis: int = 1, *, idx: torch.Tensor | None) -> torch.Tensor | None:
    """The problems ``idx`` of a batched tensor (batch on ``axis``); the tensor itself when ``idx`` is None."""
    return T if T is None or idx is None else T.index_select(axis, idx)


def _widen(entry: dict, idx: np.ndarray, B: int) -> dict:
    """A trace entry of a solve over the problems ``idx`` with its per-problem lists widened to the batch (NaN for
    the problems not in that solve)."""
    if idx.size == B:
        return dict(entry)
    out = {}
    for key, value in entry.items():
        if isinstance(value, list) and len(value) == idx.size:
            full = [float("nan")] * B
            for i, x in zip(idx.tolist(), value):
                full[i] = x
            value = full
        out[key] = value
    return out


def _zero_solution(datafit, penalty, K, W0, free, checks, seconds) -> SolveResult:
    """W = 0 certified optimal for every problem: the covariates at their own optimum, duals at that point."""
    n, B, p = W0.shape
    W = torch.zeros_like(W0)
    pred = datafit.predict_w(W)
    gamma = covariate_optimum(datafit, pred)
    full = pred if gamma is None else pred + datafit.Z @ gamma.T
    objective = datafit.value(full).double().cpu().numpy()
    dual = None if K is None else torch.zeros((K.shape[0], B, p), dtype=W0.dtype, device=W0.device)
    zeros = np.zeros(B)
    return SolveResult(
        W=W, gamma=gamma, dual=dual, data_dual=2 * datafit.c * (full - datafit.y), objective=objective,
        primal_residual=zeros, dual_residual=zeros.copy(), converged=np.ones(B, dtype=bool), iterations=np.zeros(B, dtype=np.int64),
        seconds=seconds, method="working_set", step=np.full(B, np.nan), trace=[],
        working_set={"size": 0, "features": p, "outer_iterations": 0, "check_passed": True, "sizes": [0], "checks": checks},
    )
