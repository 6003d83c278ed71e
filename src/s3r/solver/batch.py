"""Assemble and solve a batch of S3R problems that share X and the spot graph.

Problems in a batch may differ in response (targets), observation weights (CV folds) and λ, α, β
(parameter sets); they are stacked on one tensor axis so a GPU (or a CPU's vector units) solves them in
one program instead of a Python loop.

Handover, the one convention for the large tensors of a solve (10⁵ spots × 1,000 features: the design 0.8 GB in
float64, the edges × p dual 1.6 GB and W 0.4 GB in float32): ``own_NAME=True`` says the argument ``NAME`` was made
for this call and its caller will not read it again, so the callee may write into it and return it instead of
copying it. :func:`solve_batch` takes ``own_X`` and ``own_dual0``; every level solver — the working-set loop, the
PDHG (through :func:`_level_solver`: it copies its starts, so it drops them), the coarse-to-fine levels — takes
``own_W0`` and ``own_U0``. A start converted here to another dtype or device is new memory, hence the solve's own
(:func:`_start_tensor`), and so is every start made here (W with its masked rows, a renumbered or prolongated copy).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import scipy.sparse as sp
import torch

from s3r.solver.constant_start import constant_start
from s3r.solver.datafit import SquaredLoss
from s3r.solver.device import cpu_threads, resolve_device, resolve_dtype
from s3r.solver.operators import IncidenceOperator, LinearOperator, SparseMatrixOperator
from s3r.solver.penalties import GraphL1, GraphQuadratic, SparseGroupLasso
from s3r.solver.multilevel import coarse_levels, solve_coarse_to_fine
from s3r.solver.primal_dual import primal_dual
from s3r.solver.result import SolveResult
from s3r.solver.support import prune_numerical_zeros
from s3r.solver.working_set import MIN_SIZE, solve_working_set
from s3r.validation import SMOOTH_MODES

# a cold tv solve starts at the spatially constant model (s3r.solver.constant_start) where its least-squares edge flow
# fits in the box |U| ≤ λ, i.e. where that start is already optimal (lymph node, tuned λ: 10 iterations, not 40,000
# unconverged; benchmarks/README.md, session 10)
CONSTANT_START = True
FLOAT32_TOL = 1e-5  # the tightest relative residual a float32 solve is asked for; below it a float64 polish finishes
# the float32 stage of ``mixed`` hands over to the float64 polish once its residual has stalled this many iterations
# (no 10 % decrease of max(rel_p, rel_d), s3r.solver.primal_dual.STALL_DROP): float32's
# floor sits near 1e-5 on large graphs (10⁵ spots, coarse-started: flat at 1.3e-5 from 9,000 to 17,110 iterations)
STALL_WINDOW = 2000
STALL_BELOW = 100.0  # … counted only below this multiple of the stage's tolerance (not in the start-up transient)
# from this many spots the solve runs on spots renumbered for locality (LinearOperator.locality_order) and returns in
# the caller's order: 10⁵ spots × 6 features 1.4× per PDHG iteration; 3,592 × 25, batch 2: 0.95×, not worth the copies
REORDER_MIN_SPOTS = 10_000


def build_operator(smooth: str, *, edges=None, edge_weights=None, n_nodes=None, matrix=None, device="cpu", dtype=torch.float64) -> LinearOperator:
    """tv: weighted incidence; quadratic: √w-weighted incidence (so ‖KW‖² = tr(WᵀLW)); graph_l1: a sparse matrix."""
    if smooth == "graph_l1":
        if matrix is None:
            raise ValueError("graph_l1 needs a sparse operator matrix")
        return SparseMatrixOperator(matrix, device, dtype)
    if edges is None:
        raise ValueError(f"{smooth} needs graph edges")
    w = np.ones(len(edges)) if edge_weights is None else np.asarray(edge_weights, dtype=np.float64)
    if smooth == "quadratic":
        w = np.sqrt(w)
    return IncidenceOperator(edges, w, n_nodes, device, dtype)


def _per_problem(value, B, name, dtype, device):
    arr = np.full(B, float(value)) if np.ndim(value) == 0 else np.array(value, dtype=np.float64).reshape(-1)
    if arr.shape != (B,):
        raise ValueError(f"{name} must be a scalar or have one value per problem ({B}); got shape {arr.shape}")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite and non-negative")
    return torch.as_tensor(arr, dtype=dtype, device=device)


def solve_batch(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    smooth: str,
    operator: LinearOperator | None,
    lambda_smooth,
    alpha,
    beta,
    weights: np.ndarray | None = None,
    free_rows: np.ndarray | None = None,
    covariates: np.ndarray | None = None,
    penalty_factor: np.ndarray | None = None,
    W0: np.ndarray | torch.Tensor | None = None,
    gamma0: np.ndarray | None = None,
    dual0: torch.Tensor | None = None,
    data_dual0: torch.Tensor | None = None,
    step0: np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 50_000,
    device="auto",
    dtype="float64",
    callback=None,
    working_set="auto",
    prune_zeros: bool = True,
    coarsen="auto",
    stall: int | None = None,
    check_warm_start: bool = False,
    own_X: bool = False,
    own_dual0: bool = False,
) -> SolveResult:
    """Solve B problems; Y, weights, free_rows are (n,) or (n, B); W0 is (n, B, p).

    ``working_set``: True solves on the features that can be non-zero and certifies the others at zero
    (:mod:`s3r.solver.working_set`); False moves every feature on every iteration; ``"auto"`` picks by
    :func:`use_working_set`.

    ``prune_zeros``: columns left at a noise-level norm are zeroed where the optimality check proves them zero
    (:mod:`s3r.solver.support`; the result's ``zeroed``); off for solves that only predict (cross-validation).

    ``dtype``: ``"float64"``, ``"float32"`` or ``"mixed"`` — float32 (half the memory traffic per iteration) to
    ``max(tol, FLOAT32_TOL)``, then a float64 polish warm-started from that state only where float32 did not meet
    ``tol`` (a tolerance below float32's reach, or no convergence within ``max_iter``; the polish gets its own
    ``max_iter``). The result's ``precision`` says which happened.

    ``coarsen``: a cold start solves the problem restricted to aggregated spots first and refines it level by level
    (:mod:`s3r.solver.multilevel`; same optimum and certificate, fewer iterations on large graphs). True / False, or
    ``"auto"``: from :data:`~s3r.solver.multilevel.AUTO_MIN_SPOTS` spots on (below, it does not pay). The result's
    ``multilevel`` has the levels and their iterations.

    ``stall``: stop the PDHG once its residual has stalled for this many iterations (the float32 stage of ``mixed``
    uses :data:`STALL_WINDOW`; the result is then not converged and the polish takes over from its state).

    ``own_X``, ``own_dual0``: the caller hands X, resp. ``dual0``, over (the handover convention in the module
    docstring): X (a float64 numpy array, the estimator's standardised copy) is then renumbered in place for locality
    (:data:`REORDER_MIN_SPOTS`) and put back at the end instead of copied (n × p float64: 0.8 GB at 10⁵ × 1,000), and
    the returned edges × p dual is written into ``dual0``.
    """
    if smooth not in SMOOTH_MODES:
        raise ValueError(f"smooth must be one of {SMOOTH_MODES}, got {smooth!r}")
    if operator is not None and not operator.ordered and operator.shape[1] >= REORDER_MIN_SPOTS:
        found = operator.locality_order()
        if found is not None:
            order, rows, reordered = found
            at = lambda a, idx: a if a is None or np.ndim(a) == 0 else _rows(a, idx)  # noqa: E731
            in_place = own_X and isinstance(X, np.ndarray) and X.dtype == np.float64 and X.flags.c_contiguous and X.flags.writeable
            Xo = _take_rows_(X, order) if in_place else at(X, order)
            try:
                res = solve_batch(Xo, at(Y, order), smooth=smooth, operator=reordered, lambda_smooth=lambda_smooth, alpha=alpha,
                                  beta=beta, weights=at(weights, order), free_rows=at(free_rows, order), covariates=at(covariates, order),
                                  penalty_factor=penalty_factor, W0=at(W0, order), gamma0=gamma0, dual0=at(dual0, rows),
                                  data_dual0=at(data_dual0, order), step0=step0, tol=tol, max_iter=max_iter, device=device, dtype=dtype,
                                  callback=callback, working_set=working_set, prune_zeros=prune_zeros, coarsen=coarsen, stall=stall,
                                  own_dual0=dual0 is not None,  # the renumbered copy is made for the call
                                  check_warm_start=check_warm_start)
            finally:
                if in_place:  # the caller's rows back in its order
                    _take_rows_(X, np.argsort(order))
            res.W, res.data_dual, res.dual = (_unpermute_rows_(T, idx)
                                              for T, idx in ((res.W, order), (res.data_dual, order), (res.dual, rows)))
            return res
    common = dict(smooth=smooth, operator=operator, lambda_smooth=lambda_smooth, alpha=alpha, beta=beta, weights=weights,
                  free_rows=free_rows, covariates=covariates, penalty_factor=penalty_factor, device=device, callback=callback,
                  working_set=working_set, max_iter=max_iter, check_warm_start=check_warm_start)
    start = None
    if W0 is None and dual0 is None and data_dual0 is None:
        start = _constant_start(X, Y, weights, free_rows, covariates, penalty_factor, lambda_smooth, alpha, beta, smooth, operator)
    if start is not None:
        # the start is optimal up to rounding: float32 would sit at its floor on the fused map's edge residuals
        # (lymph node: 20,000 float32 iterations at 2e-4), so the certificate is made in float64 at once
        result = _solve_tensors(X, Y, **common, W0=start["W0"], gamma0=start["gamma0"], dual0=start["dual0"],
                                data_dual0=start["data_dual0"], own_dual0=True, step0=step0, tol=tol,
                                dtype="float64" if isinstance(dtype, str) and dtype == "mixed" else dtype, prune_zeros=prune_zeros,
                                coarsen=False, stall=None)
        result.constant_start = start["flow_ratio"]
        if isinstance(dtype, str) and dtype == "mixed":
            result.precision = {"float32_iterations": [0] * len(result.iterations), "float32_seconds": 0.0, "polished": True}
        return result
    if not (isinstance(dtype, str) and dtype == "mixed"):
        return _solve_tensors(X, Y, **common, W0=W0, gamma0=gamma0, dual0=dual0, data_dual0=data_dual0, own_dual0=own_dual0,
                              step0=step0, tol=tol, dtype=dtype, prune_zeros=prune_zeros, coarsen=coarsen, stall=stall)
    # the stages go to the tensor solve directly: the constant start was tried above (10⁵ × 1,000: n·p² each try)
    # below float32's reach the polish always runs and prunes: the float32 stage need not check the columns too
    first = _solve_tensors(X, Y, **common, W0=W0, gamma0=gamma0, dual0=dual0, data_dual0=data_dual0, own_dual0=own_dual0,
                           step0=step0, tol=max(tol, FLOAT32_TOL), dtype="float32", prune_zeros=prune_zeros and tol >= FLOAT32_TOL,
                           coarsen=coarsen, stall=STALL_WINDOW if stall is None else stall)
    info = {"float32_iterations": np.asarray(first.iterations).tolist(), "float32_seconds": first.seconds,
            "float32_stalled": any(e.get("stalled", False) for e in first.trace)}
    if tol >= FLOAT32_TOL and bool(np.all(first.converged)):
        first.precision = {**info, "polished": False}
        return first
    # the polish starts warm, where no coarse level is needed; the float32 stage's state is its own (converted)
    final = _solve_tensors(X, Y, **common, W0=first.W, gamma0=first.gamma, dual0=first.dual, data_dual0=first.data_dual,
                           own_dual0=False, step0=first.step, tol=tol, dtype="float64", prune_zeros=prune_zeros, coarsen=False,
                           stall=None)
    final.iterations = np.asarray(first.iterations) + np.asarray(final.iterations)
    final.seconds += first.seconds
    if final.multilevel is None:  # the coarse levels ran in the float32 stage
        final.multilevel = first.multilevel
    final.precision = {**info, "polished": True}
    return final


def _solve_tensors(X, Y, *, smooth, operator, lambda_smooth, alpha, beta, weights, free_rows, covariates, penalty_factor, W0,
                   gamma0, dual0, data_dual0, own_dual0, step0, tol, max_iter, device, dtype, callback, working_set, prune_zeros,
                   coarsen, stall, check_warm_start=False) -> SolveResult:
    """One solve in one precision (``dtype`` not ``"mixed"``) on the spots as given: the batch's tensors, the
    level solver (working sets, coarse levels) and the pruning. Every start tensor made here is handed over."""
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    if operator is not None:
        operator = operator.astype(dt)
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y.reshape(n, -1)
    B = Y.shape[1]

    def as_nb(a, default):
        a = np.full((n, B), default, dtype=np.float64) if a is None else np.asarray(a, dtype=np.float64)
        return np.broadcast_to(a.reshape(n, -1), (n, B))

    t = lambda a: _tensor(a, dt, dev)  # noqa: E731
    Ft = t(as_nb(free_rows, 1.0))
    Zt = t(np.asarray(covariates, dtype=np.float64).reshape(n, -1)) if covariates is not None and np.size(covariates) else None
    pf = t(np.ones(p) if penalty_factor is None else np.asarray(penalty_factor, dtype=np.float64))
    lam, a, b = (_per_problem(v, B, name, dt, dev) for v, name in ((lambda_smooth, "lambda_smooth"), (alpha, "alpha"), (beta, "beta")))
    datafit = SquaredLoss(t(X), t(Y), t(as_nb(weights, 1.0)), Zt)
    penalty = SparseGroupLasso(a, b, pf, n, Ft)
    gt = None
    if Zt is not None:
        gt = torch.zeros((B, Zt.shape[1]), dtype=dt, device=dev) if gamma0 is None else torch.as_tensor(gamma0, dtype=dt, device=dev).reshape(B, -1)
    smooth_term = None
    if operator is not None:
        smooth_term = GraphQuadratic(lam) if smooth == "quadratic" else GraphL1(lam)
    step0 = None if step0 is None else np.asarray(step0, dtype=np.float64).reshape(B)
    # a problem that never iterated (fresh, or W = 0 certified) has no step (NaN): the solver starts it at its own, the others keep theirs
    tau0 = None if step0 is None else torch.as_tensor(step0, dtype=dt, device=dev)
    if working_set == "auto":
        working_set = use_working_set(p, a, b, pf)
    with cpu_threads(dev, max(n, operator.shape[0] if operator is not None else 0) * B * p):
        pdhg = primal_dual if stall is None else partial(primal_dual, stall=int(stall), stall_below=STALL_BELOW * tol)
        solve = partial(solve_working_set, inner=pdhg, check_warm_start=check_warm_start) if working_set else _level_solver(pdhg)
        # a dual handed over or converted here holds the result (10⁵ × 100, a CV batch of 10: 1.6 GB a chunk not allocated)
        U0, own_U0 = _start_tensor(dual0, own_dual0, dt, dev)
        levels = coarse_levels(coarsen, operator, smooth_term, Ft, cold=W0 is None and dual0 is None and data_dual0 is None)
        if W0 is not None:
            Wt = torch.as_tensor(W0, dtype=dt, device=dev).reshape(n, B, p) * Ft.unsqueeze(-1)
        elif levels:  # the levels read only the zero start's shape: no n × B × p zeros held through the solve
            Wt = torch.zeros((), dtype=dt, device=dev).expand(n, B, p)
        else:
            Wt = torch.zeros((n, B, p), dtype=dt, device=dev)
        if levels:
            solve = partial(solve_coarse_to_fine, levels=levels, solve=solve)
        v0 = None if data_dual0 is None else torch.as_tensor(data_dual0, dtype=dt, device=dev)
        result = solve(datafit, penalty, smooth_term, operator, Wt, gt, v0=v0, U0=U0, tau0=tau0, tol=tol, max_iter=max_iter,
                       callback=callback, own_W0=not levels, own_U0=own_U0)  # Wt is made here (the zero view only read)
        if prune_zeros:
            result.W, result.zeroed = prune_numerical_zeros(datafit, penalty, smooth_term, operator, result.W)
    return result


def _level_solver(pdhg):
    """``pdhg`` (:func:`~s3r.solver.primal_dual.primal_dual`) as a level solver: it takes the handover keywords
    and has nothing to take over (it copies its starts), so they are dropped here."""

    def solve(*args, own_W0: bool = False, own_U0: bool = False, **kwargs):
        return pdhg(*args, **kwargs)

    return solve


def _start_tensor(a, own: bool, dt, dev) -> tuple[torch.Tensor | None, bool]:
    """(T, owned): the caller's start ``a`` in the solve's dtype and device, and whether the solve may write into it
    and return it — when handed over (``own``), or when T is new memory: ``Tensor.to`` returns the tensor itself
    unless the dtype or device change. A numpy array not handed over is copied (the solve never writes into it)."""
    if a is None:
        return None, False
    if isinstance(a, torch.Tensor):
        T = a.to(dtype=dt, device=dev)
        return T, own or T is not a
    return (torch.as_tensor(a, dtype=dt, device=dev) if own else torch.tensor(np.asarray(a), dtype=dt, device=dev)), True


def _tensor(a, dt, dev) -> torch.Tensor:
    """A tensor of its own (never a view of the caller's array) in the solve's dtype and device, without the float64
    copy ``np.array`` made on the way (10⁵ × 1,000 features: 0.8 GB at the peak)."""
    arr = np.asarray(a, dtype=np.float64)
    if not (arr.flags.c_contiguous and arr.flags.writeable):  # broadcast views (zero strides) become real arrays
        arr = np.array(arr)
    T = torch.as_tensor(arr, dtype=dt, device=dev)
    viewing = T.device.type == "cpu" and T.data_ptr() == arr.__array_interface__["data"][0]  # T is arr's memory …
    return T.clone() if viewing and isinstance(a, np.ndarray) and np.may_share_memory(arr, a) else T  # … and arr the caller's


def _unpermute_rows_(T: torch.Tensor | None, idx: np.ndarray, block_elems: int = 1 << 22) -> torch.Tensor | None:
    """T with its rows put back in the caller's order (row ``idx[k]`` of the caller is row k of T), in place: the
    edges × p dual is the largest tensor of a solve (10⁵ spots × 1,000 features: 1.6 GB in float32), and a
    whole-tensor ``index_select`` held it twice at the end of the solve."""
    return None if T is None else _gather_rows_(T, np.argsort(idx), block_elems)


def _gather_rows_(T: torch.Tensor, rows: np.ndarray, block_elems: int = 1 << 22) -> torch.Tensor:
    """T with row k replaced by row ``rows[k]``, in place, a block of trailing columns at a time (no second copy of
    T); use the returned tensor (a non-contiguous T is reshaped into a new one)."""
    idx = torch.as_tensor(rows, device=T.device)
    flat = T.view(T.shape[0], -1) if T.is_contiguous() else T.reshape(T.shape[0], -1)
    step = max(1, block_elems // max(1, T.shape[0]))
    for start in range(0, flat.shape[1], step):
        part = flat[:, start:start + step]
        part.copy_(part.index_select(0, idx))
    return flat.view(T.shape)


def _take_rows_(A: np.ndarray, idx: np.ndarray, block_elems: int = 1 << 22) -> np.ndarray:
    """A (a writable, C-contiguous numpy array) with its rows replaced by ``A[idx]``, in place (:func:`_gather_rows_`)."""
    _gather_rows_(torch.from_numpy(A), idx, block_elems)
    return A


def _rows(a, idx: np.ndarray):
    """Rows ``idx`` of a numpy array or a torch tensor (on its device)."""
    if isinstance(a, torch.Tensor):
        return a.index_select(0, torch.as_tensor(idx, device=a.device))
    return np.asarray(a)[idx]


def _constant_start(X, Y, weights, free_rows, covariates, penalty_factor, lambda_smooth, alpha, beta, smooth, operator):
    """The constant-model start (:mod:`s3r.solver.constant_start`) where it is certified for every problem of the
    batch: tv, no pinned rows, least-squares flow inside the box. None otherwise (the cold path then runs)."""
    if not CONSTANT_START or smooth != "tv" or operator is None:
        return None
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    Y = np.asarray(Y, dtype=np.float64).reshape(n, -1)
    B = Y.shape[1]
    if free_rows is not None and not np.all(np.asarray(free_rows) == 1):
        return None
    per = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (B,))  # noqa: E731
    O = np.broadcast_to(np.ones((n, 1)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(n, -1), (n, B))
    Z = np.asarray(covariates, dtype=np.float64).reshape(n, -1) if covariates is not None and np.size(covariates) else None
    pf = np.ones(p) if penalty_factor is None else np.asarray(penalty_factor, dtype=np.float64).reshape(-1)
    start = constant_start(X, Y, O, Z, per(alpha), per(beta), pf, per(lambda_smooth), operator.to_scipy())
    return start if np.all(start["flow_ratio"] <= 1.0) else None


def use_working_set(p: int, alpha: torch.Tensor, beta: torch.Tensor, factor: torch.Tensor) -> bool:
    """Working sets pay when some features can be certified at zero: more features than the smallest working
    set, and a sparsity penalty on every problem of the batch (without one, every feature is non-zero)."""
    return p > 2 * MIN_SIZE and bool(((alpha > 0) | (beta > 0)).all()) and bool((factor > 0).any())
