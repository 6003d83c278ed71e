"""Solving the parameter sets of one fold (several targets at once), screening those whose optimum is W = 0."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from s3r.columns import put
from s3r.cv.folds import heldout_mask, training_weights
from s3r.errors import S3RInputError
from s3r.problem import Problem
from s3r.solver import solve_batch
from s3r.solver.constant_start import FlowSolver, flow_solver
from s3r.solver.flow_start import warm_flow_dual


# -- solving folds ---------------------------------------------------------------------------------------
# One assembly (s3r.problem) for the final fit and every fold: the design, scaling, intercept, mask, family, θ and
# operator are built once from all spots' features; a fold only changes the observation weights.
CVProblem = Problem


@dataclass
class FoldSolution:
    """Solutions of a batch of parameter sets on one fold, with the solver state a warm start needs."""

    W: np.ndarray  # (n, B, p)
    gamma: np.ndarray | None  # (B, q)
    data_dual: np.ndarray  # (n, B)
    step: np.ndarray  # (B,)
    converged: np.ndarray  # (B,) bool
    iterations: np.ndarray  # (B,)
    seconds: float

    @classmethod
    def empty(cls, n_spots: int, n_features: int) -> "FoldSolution":
        """No parameter sets solved (a target whose search has stopped): zero-length batch axes, so its fold state
        still concatenates with the other rounds' in a warm-start store."""
        return cls(W=np.zeros((n_spots, 0, n_features), dtype=np.float32), gamma=None,
                   data_dual=np.zeros((n_spots, 0), dtype=np.float32), step=np.zeros(0),
                   converged=np.zeros(0, dtype=bool), iterations=np.zeros(0, dtype=np.int64), seconds=0.0)


CPU_BATCH = 20  # parameter sets per batched solve on a CPU (see solve_fold)
# at most this many bytes per edges × batch × features tensor of a batched CPU solve (the PDHG holds four, plus the
# certificate's): at 10⁵ spots × 100 features one trial's is 0.16 GB, and a fold of 10 trials peaked at 12.35 GiB with
# the whole round in one batch (benchmarks/README.md, session 15); at 3,592 spots × 25 it allows 180 trials
EDGE_BYTES = 1 << 28
COARSEN = False  # coarse-to-fine levels for a batch's first (cold) chunk …
COARSEN_MIN_SPOTS = 10_000  # … from this many spots on


def solve_fold(
    problem: CVProblem, params: list[dict], folds, fold: int, *, tol: float = 1e-2, max_iter: int = 500,
    chunk: int = 100, warm: dict | None = None, batch: int = 0,
) -> FoldSolution:
    """Solve every parameter set on one fold, ``batch`` at a time in one batched solve (held-out spots weighted 0).

    Each batch is solved in chunks of ``chunk`` iterations; converged problems leave it between chunks (their
    state carried exactly) and the next parameter sets take their places, so one slow set does not hold the
    rest in the loop. ``batch`` 0 means all at once on a GPU and ``CPU_BATCH`` on a CPU: since each problem's
    working set is checked on its own, a large batch gives every problem its own optimum; on the tuning's DLPFC folds
    (3,592 spots) batch 20 cost 0.81–0.85× batch 2 at 25 features and 1.05× at 100 (benchmarks/README.md, session
    13). ``warm`` holds per-problem start values (W, data_dual, dual, step arrays stacked on axis 1 / 0).
    Every chunk's solve checks the features its warm start leaves out before it runs
    (``solve_batch``'s ``check_warm_start``): at 10⁵ spots no 100-iteration chunk converges, and
    without that check the working set never grew past its start set (benchmarks/README.md, session 16).
    """
    return solve_fold_targets([problem], [params], folds, fold, tol=tol, max_iter=max_iter, chunk=chunk,
                              warm=[warm], batch=batch)[0]


def solve_fold_targets(
    problems: list[CVProblem], params: list[list[dict]], folds, fold: int, *, tol: float = 1e-2, max_iter: int = 500,
    chunk: int = 100, warm: list[dict | None] | None = None, batch: int = 0,
) -> list[FoldSolution]:
    """:func:`solve_fold` for several targets of one sample at once: every target's parameter sets on one fold
    stacked on the batch axis of one program (targets of a sample share the design, graph and covariates, so
    they differ only in the response and the penalties, which the batched solver takes per problem).

    ``params[t]`` and ``warm[t]`` belong to ``problems[t]``; one :class:`FoldSolution` per target comes back.
    A batch mixes continuing and fresh problems: each keeps its balanced step, a fresh one (NaN) gets its own (issue 13).
    Count families are solved target by target (their solver takes no restart between iteration chunks).
    """
    warm = list(warm) if warm is not None else [None] * len(problems)
    first = problems[0]
    for other in problems[1:]:
        if other.X is not first.X and not np.array_equal(other.X, first.X):
            raise S3RInputError("targets solved together must share one design (the features of one sample)")
    if not first.gaussian:
        return [_solve_fold_glm(p, ps, folds, fold, tol=tol, max_iter=max_iter, warm=w) for p, ps, w in zip(problems, params, warm)]
    sizes = [len(ps) for ps in params]
    n, B = first.n_spots, sum(sizes)
    held = heldout_mask(folds, fold)
    weights = training_weights(folds, fold)
    columns = lambda values: np.concatenate([np.repeat(v[:, None], s, axis=1) for v, s in zip(values, sizes)], axis=1)  # noqa: E731
    Y = columns([p.y for p in problems])
    free = columns([p.free_rows(held) for p in problems])
    lam, alpha, beta = (np.concatenate(parts) for parts in zip(*(_penalties(p, ps, weights) for p, ps in zip(problems, params))))
    state = _stack_warm(warm, sizes, n)
    # edge duals only of the problems that go on into another batch (a warm start's, or an unconverged chunk's): a
    # finished problem's is never read again, and a full (edges, B, features) array was a fold job's largest write
    duals = _split_duals(state.pop("dual"))
    converged, iterations = np.zeros(B, dtype=bool), np.zeros(B, dtype=np.int64)
    start = time.perf_counter()
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    fresh = np.full(B, state["W"] is None)  # no warm start and never solved: a batch of these alone starts cold
    state = _screen_zeros(problems, offsets, weights, alpha, beta, state, converged)
    queue = np.flatnonzero(~converged)
    # a primal warm start (the earlier rounds' W and data dual, no edge dual) gets the clipped flow of its own
    # optimality conditions as its edge dual when it first enters a batch (s3r.solver.flow_start)
    flows = _flow_solver(first, state)
    batch = batch if batch > 0 else _default_batch(first, queue.size)
    while queue.size:
        active, queue = queue[:batch], queue[batch:]
        budget = int(min(chunk, max_iter - iterations[active].max()))
        cold = bool(fresh[active].all())  # as a single fit (constant start, coarse levels), not from the others' zero state
        take = lambda a, axis=1: None if a is None or cold else np.take(a, active, axis=axis)  # noqa: E731
        dual0 = None if cold else _batch_duals(first, state, duals, active, flows, (lam, alpha, beta))
        res = solve_batch(
            first.X, Y[:, active], smooth=first.smooth, operator=first.operator,
            lambda_smooth=lam[active], alpha=alpha[active], beta=beta[active], weights=weights, free_rows=free[:, active],
            covariates=first.covariates, penalty_factor=first.penalty_factor, W0=take(state["W"]), gamma0=take(state["gamma"], 0),
            data_dual0=_t(take(state["data_dual"]), first), dual0=_t(dual0, first), step0=take(state["step"], 0), tol=tol,
            max_iter=budget, device=first.device, dtype=first.dtype, prune_zeros=False,  # CV only predicts
            coarsen=cold and COARSEN and n >= COARSEN_MIN_SPOTS,
            own_dual0=dual0 is not None,  # a copy made for this call (stacked or the flows): the solve may write into it
            check_warm_start=True,  # a chunk left unconverged still grows its set in the next (issue 11)
        )
        done = np.asarray(res.converged, dtype=bool)
        used = np.where(done, np.asarray(res.iterations), budget)
        iterations[active] += used
        out = {
            "W": res.W.cpu().numpy(), "gamma": None if res.gamma is None else res.gamma.cpu().numpy(),
            "data_dual": res.data_dual.cpu().numpy(), "step": np.asarray(res.step),
        }
        state = _scatter_state(state, out, active, n, B)
        converged[active] = done
        fresh[active] = False
        again = ~done & (iterations[active] < max_iter)
        _keep_duals(duals, res.dual, active, again)
        queue = np.concatenate([active[again], queue])
    seconds = time.perf_counter() - start
    part = lambda a, t, axis=1: None if a is None else np.take(a, np.arange(offsets[t], offsets[t + 1]), axis=axis)  # noqa: E731
    return [
        FoldSolution(
            W=part(state["W"], t), gamma=part(state["gamma"], t, 0), data_dual=part(state["data_dual"], t),
            step=part(state["step"], t, 0), converged=converged[offsets[t]:offsets[t + 1]],
            iterations=iterations[offsets[t]:offsets[t + 1]], seconds=seconds,
        )
        for t in range(len(problems))
    ]


def _screen_zeros(problems: list[CVProblem], offsets, weights, alpha, beta, state: dict, converged: np.ndarray) -> dict:
    """Mark converged (in place) the problems whose optimum is W = 0 and give them that state: exact, no solve needed,
    and W = 0 with the covariates at their own fit is what the solver would reach."""
    n, B = problems[0].n_spots, converged.size
    for t, problem in enumerate(problems):
        lo, hi = offsets[t], offsets[t + 1]
        zero = np.zeros(B, dtype=bool)
        zero[lo:hi] = zero_is_optimal(problem, weights, alpha[lo:hi], beta[lo:hi])
        if zero.any():
            state = _scatter_state(state, _zero_state(problem, weights, int(zero.sum())), np.flatnonzero(zero), n, B)
            converged[zero] = True
    return state


def _default_batch(problem: CVProblem, queued: int) -> int:
    """All at once on a GPU; ``CPU_BATCH`` on a CPU, fewer where a batch's edge duals would pass ``EDGE_BYTES`` each."""
    if problem.device.type != "cpu":
        return max(1, queued)
    if problem.operator is None:
        return CPU_BATCH
    per_problem = problem.operator.shape[0] * problem.X.shape[1] * np.dtype(_np_dtype(problem)).itemsize
    return int(min(CPU_BATCH, max(1, EDGE_BYTES // max(per_problem, 1))))


def _flow_solver(problem: CVProblem, state: dict) -> FlowSolver | None:
    """The flows' factorised Laplacian when the start is primal (W and data dual) on a smoothness graph, else None."""
    primal = state["W"] is not None and state["data_dual"] is not None
    if primal and problem.operator is not None and problem.smooth in ("tv", "graph_l1", "quadratic"):
        return flow_solver(problem.operator.to_scipy())
    return None


def _flow_duals(problem: CVProblem, state: dict, active: np.ndarray, fresh: np.ndarray, dual0, lam, alpha, beta, flows) -> np.ndarray:
    """The active batch's edge duals with the ``fresh`` ones (no dual yet) set to their warm start's flow."""
    idx = active[fresh]
    W = state["W"]
    if dual0 is None:
        dual0 = np.zeros((problem.operator.shape[0], active.size, W.shape[2]), dtype=W.dtype)
    dual0[:, fresh] = warm_flow_dual(problem.X, np.take(W, idx, axis=1), np.take(state["data_dual"], idx, axis=1), alpha[idx], beta[idx],
                                     lam[idx], flows.K, smooth=problem.smooth, penalty_factor=problem.penalty_factor, flows=flows)
    return dual0


def _stack_warm(warm: list[dict | None], sizes: list[int], n: int) -> dict:
    """The targets' warm starts on one batch axis (axis 1; 0 for gamma and step); a key some target lacks starts cold."""
    state = {key: None for key in ("W", "gamma", "data_dual", "dual", "step")}
    if not any(warm):
        return state
    for key in state:
        parts = [None if not w else w.get(key) for w in warm]
        if any(part is None for part in parts):
            continue
        state[key] = np.concatenate(parts, axis=0 if key in ("gamma", "step") else 1)
    return state


def _split_duals(dual: np.ndarray | None) -> dict[int, np.ndarray]:
    """{problem: its (edges, features) dual} from a warm start's stacked (edges, B, features) duals, if it has them."""
    return {} if dual is None else {b: np.ascontiguousarray(dual[:, b]) for b in range(dual.shape[1])}


def _batch_duals(problem: CVProblem, state: dict, duals: dict, active: np.ndarray, flows, penalties) -> np.ndarray | None:
    """The active batch's (edges, batch, features) edge duals: each problem's own where it has one, its warm start's
    flow where it has none yet (a primal warm start), zeros otherwise; None when no problem has any."""
    has = np.array([b in duals for b in active.tolist()])
    dual0 = None
    if has.any():
        dual0 = np.zeros((problem.operator.shape[0], active.size, problem.X.shape[1]), dtype=state["W"].dtype)
        for j in np.flatnonzero(has):
            dual0[:, j] = duals[int(active[j])]
    if flows is not None and not has.all():
        dual0 = _flow_duals(problem, state, active, ~has, dual0, *penalties, flows)
    return dual0


def _keep_duals(duals: dict, dual, active: np.ndarray, again: np.ndarray) -> None:
    """After a batch: the edge duals of its problems that go on (``again``) replace their old ones; the rest go."""
    for b in active.tolist():
        duals.pop(b, None)
    if dual is not None and again.any():
        dual = dual.cpu().numpy()
        duals.update({int(active[j]): np.ascontiguousarray(dual[:, j]) for j in np.flatnonzero(again)})


def _zero_state(problem: CVProblem, weights, count: int) -> dict:
    """The solver state at W = 0 with the covariates at their own fit, for ``count`` screened problems."""
    n, dt = problem.n_spots, _np_dtype(problem)
    g0 = problem.null_gamma(weights)
    eta = problem.null_eta(weights) if g0 is None else problem.covariates @ g0
    gamma = None if g0 is None else np.repeat(g0[None].astype(dt), count, axis=0)
    # the data dual at that optimum, v_i = 2c_i(ŷ_i − y_i); every state entry is a plain numeric array
    v = ((2.0 / n) * weights * (eta - problem.y)).astype(dt)
    return {"W": np.zeros((n, count, problem.X.shape[1]), dtype=dt), "gamma": gamma,
            "data_dual": np.repeat(v[:, None], count, axis=1), "step": np.full(count, np.nan)}


def _solve_fold_glm(problem: CVProblem, params: list[dict], folds, fold: int, *, tol: float, max_iter: int, warm: dict | None) -> FoldSolution:
    """One batched solve with a GLM data fit (no chunking); W and γ warm-start it. Its data dual and step as well
    changed nothing (session 33: a Poisson search's rounds took the same iterations, ±4 %), so they are not stored."""
    from s3r.solver.glm_batch import solve_glm_batch

    B = len(params)
    start = time.perf_counter()
    weights = training_weights(folds, fold)
    lam, alpha, beta = _penalties(problem, params, weights)
    W0 = None if not warm or warm.get("W") is None else warm["W"]
    gamma0 = None if not warm or warm.get("gamma") is None or problem.covariates is None else warm["gamma"]
    if gamma0 is None and problem.covariates is not None:  # start the covariates at their training-spot fit
        gamma0 = np.repeat(problem.null_gamma(weights)[None], B, axis=0)
    res = solve_glm_batch(
        problem.X, np.repeat(problem.y[:, None], B, axis=1), family=problem.family, theta=problem.theta,
        smooth=problem.smooth, operator=problem.operator, lambda_smooth=lam, alpha=alpha, beta=beta,
        weights=weights, covariates=problem.covariates, offset=problem.offset, penalty_factor=problem.penalty_factor,
        W0=W0, gamma0=gamma0, tol=tol, max_iter=max_iter, device=problem.device, dtype=problem.dtype,
    )
    n = problem.n_spots
    return FoldSolution(
        W=res.W.cpu().numpy(), gamma=None if res.gamma is None else res.gamma.cpu().numpy(),
        data_dual=np.zeros((n, B), dtype=_np_dtype(problem)),
        step=np.asarray(res.step), converged=np.asarray(res.converged, dtype=bool), iterations=np.asarray(res.iterations, dtype=np.int64),
        seconds=time.perf_counter() - start,
    )


def _penalties(problem: Problem, params: list[dict], weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The solver's λ, α, β for these parameter sets on these training weights (s3r.problem's mapping)."""
    get = lambda key: np.array([p[key] for p in params], dtype=np.float64)  # noqa: E731
    return problem.solver_penalties(get("lambda_smooth"), get("alpha"), get("beta"), weights)


def zero_is_optimal(problem: Problem, weights, alpha, beta) -> np.ndarray:
    """(B,) True where W = 0 already satisfies the optimality conditions, so the solve can be skipped.

    ``alpha``, ``beta`` are the solver's (mapped) values. At W = 0 the smoothness subdifferential contains 0, so
    W = 0 is optimal when the sparse group lasso alone absorbs the data-fit gradient G at the covariates-only fit:
    ‖S_{α f_j}(G_:j)‖₂ ≤ β f_j √n for every feature j (f = penalty factors). Exact, with or without covariates
    (they sit at their own optimum given W = 0).
    """
    alpha = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    beta = np.atleast_1d(np.asarray(beta, dtype=np.float64))
    n = problem.n_spots
    G = np.abs(problem.null_gradient(weights))  # (n, p_s)
    pf = np.ones(G.shape[1]) if problem.penalty_factor is None else problem.penalty_factor
    unpenalised = pf == 0
    if unpenalised.any() and np.any(G[:, unpenalised] > 1e-12 * max(float(G.max()), 1e-300)):
        return np.zeros(alpha.shape[0], dtype=bool)  # only the smoothness term holds those columns: no closed form
    A = G[None] - alpha[:, None, None] * pf[None, None, :]  # (B, n, p)
    col = np.sqrt((np.maximum(A, 0.0) ** 2).sum(axis=1))  # (B, p)
    slack = 1e-9 * max(float(G.max()), 1e-300)
    ok = col <= beta[:, None] * pf[None, :] * np.sqrt(n) - slack
    ok[:, unpenalised] = True
    return np.all(ok, axis=1)


def _np_dtype(problem: CVProblem):
    return np.float32 if problem.dtype == torch.float32 else np.float64


def _t(a, problem: CVProblem):
    return None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=problem.dtype, device=problem.device)


def _scatter_state(state: dict, out: dict, active: np.ndarray, n: int, B: int) -> dict:
    """Write the active problems' new state into full-batch arrays (axis 1, or 0 for gamma and step)."""
    new = {}
    for key, value in out.items():
        if value is None:
            new[key] = state.get(key)  # nothing new for these problems: keep what the others have
            continue
        axis = 0 if key in ("gamma", "step") else 1
        full = state.get(key)
        if full is None or full.shape[axis] != B:
            shape = list(value.shape)
            shape[axis] = B
            full = np.zeros(shape, dtype=value.dtype)
        elif full.dtype != value.dtype:
            full = full.astype(value.dtype)
        # else written in place: the state's arrays are this solve's own (stacked or zero-filled here), and a copy of
        # an edges × batch × features dual per chunk is a transient 1.6 GB at 10⁵ spots × 100 features × 10 trials
        put(full, axis, active, value)
        new[key] = full
    return new
