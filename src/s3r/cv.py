"""Cross-validation for S3R: fold schemes, out-of-fold prediction and the held-out loss.

Random folds leak through spatial autocorrelation (a held-out spot's neighbours are in training and carry
almost its own coefficients), so the default holds out contiguous spatial blocks. A held-out spot stays in the
graph with observation weight 0: its coefficients are whatever the smoothness penalty extends into it from
training spots, so its own response never enters its prediction. The neighbour average over *spatial*
training neighbours is kept for comparison with the reference implementation's predictor (which used
neighbouring index numbers instead).

Count families (poisson, negative_binomial, gamma) are scored by the mean unit deviance on held-out spots,
which for the gaussian is the squared error, so the loss means the same thing as the data fit being tuned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from s3r.errors import S3RInputError
from s3r.graph import validate_coords
from s3r.problem import Problem
from s3r.solver import solve_batch

__all__ = [
    "FOLD_SCHEMES",
    "PREDICTORS",
    "spatial_blocks",
    "spatial_block_folds",
    "random_folds",
    "make_folds",
    "heldout_mask",
    "training_weights",
    "free_rows",
    "scored_spots",
    "predict",
    "neighbour_average",
    "heldout_mse",
    "heldout_deviance",
    "CVProblem",
    "FoldSolution",
    "solve_fold",
    "fold_losses",
    "cross_validate",
]

FOLD_SCHEMES = ("blocks", "random")
PREDICTORS = ("graph", "neighbours")
DEFAULT_BLOCKS_PER_FOLD = 4


# -- fold schemes ----------------------------------------------------------------------------------------
def spatial_blocks(coords, n_blocks: int) -> np.ndarray:
    """Block id per spot from recursive median splits along the longer side.

    Each block is the set of spots inside an axis-aligned rectangle (so it is contiguous), and block sizes
    differ by at most one spot: the sizes are fixed first and every split cuts at the count they add up to.
    """
    xy = validate_coords(coords, source="coordinates")
    n = xy.shape[0]
    if not 1 <= n_blocks <= n:
        raise S3RInputError(f"cannot cut {n} spots into {n_blocks} spatial blocks; use between 1 and {n} blocks")
    sizes = np.full(n_blocks, n // n_blocks, dtype=np.int64)
    sizes[: n % n_blocks] += 1
    labels = np.empty(n, dtype=np.int64)
    stack = [(np.arange(n), 0, n_blocks)]  # (spots, first block, number of blocks)
    while stack:
        spots, first, count = stack.pop()
        if count == 1:
            labels[spots] = first
            continue
        pts = xy[spots]
        axis = int(np.argmax(np.ptp(pts, axis=0)))
        # ties on the cut axis (grid layouts) are broken along the other axis, so a cut never scatters a row
        order = spots[np.lexsort((pts[:, 1 - axis], pts[:, axis]))]
        half = count // 2
        n_left = int(sizes[first : first + half].sum())
        stack.append((order[n_left:], first + half, count - half))
        stack.append((order[:n_left], first, half))
    return labels


def spatial_block_folds(coords, n_folds: int = 5, *, blocks_per_fold: int = DEFAULT_BLOCKS_PER_FOLD, seed: int = 0) -> np.ndarray:
    """Fold id per spot: ``n_folds × blocks_per_fold`` balanced blocks dealt to folds in a seeded random order.

    Several smaller blocks per fold keep the held-out spots close to training spots (interpolation, as the
    final fit faces at tissue holes) while still hiding whole neighbourhoods.
    """
    n_folds, blocks_per_fold = _check_folds(n_folds, len(coords)), int(blocks_per_fold)
    if blocks_per_fold < 1:
        raise S3RInputError(f"blocks_per_fold must be ≥ 1; got {blocks_per_fold}")
    n_blocks = min(n_folds * blocks_per_fold, len(coords))
    blocks = spatial_blocks(coords, n_blocks)
    order = np.random.default_rng(seed).permutation(n_blocks)
    fold_of_block = np.empty(n_blocks, dtype=np.int64)
    fold_of_block[order] = np.arange(n_blocks) % n_folds
    return fold_of_block[blocks]


def random_folds(n_spots: int, n_folds: int = 5, *, seed: int = 0) -> np.ndarray:
    """Fold id per spot, sizes balanced, assignment seeded (the reference's scheme, for comparison)."""
    n_folds = _check_folds(n_folds, n_spots)
    folds = np.arange(n_spots) % n_folds
    return np.random.default_rng(seed).permutation(folds).astype(np.int64)


def make_folds(coords, n_folds: int = 5, scheme: str = "blocks", *, seed: int = 0, blocks_per_fold: int = DEFAULT_BLOCKS_PER_FOLD) -> np.ndarray:
    if scheme == "blocks":
        return spatial_block_folds(coords, n_folds, blocks_per_fold=blocks_per_fold, seed=seed)
    if scheme == "random":
        return random_folds(len(coords), n_folds, seed=seed)
    raise S3RInputError(f"unknown fold scheme {scheme!r}; use one of {', '.join(FOLD_SCHEMES)}")


def _check_folds(n_folds, n_spots: int) -> int:
    n_folds = int(n_folds)
    if not 2 <= n_folds <= n_spots:
        raise S3RInputError(f"need 2 ≤ folds ≤ number of spots ({n_spots}); got {n_folds}")
    return n_folds


# -- out-of-fold prediction and loss ---------------------------------------------------------------------
def heldout_mask(folds, fold: int) -> np.ndarray:
    return np.asarray(folds) == fold


def training_weights(folds, fold: int) -> np.ndarray:
    """Observation weights o_i: 0 hides a held-out spot from the data fit while it stays in the graph."""
    return (~heldout_mask(folds, fold)).astype(np.float64)


def free_rows(y, heldout, mask_zero_response: bool) -> np.ndarray:
    """The y == 0 mask applied to training spots only: a held-out response must not decide its own W."""
    y = np.asarray(y)
    if not mask_zero_response:
        return np.ones(y.shape[0])
    return ((y != 0) | np.asarray(heldout, dtype=bool)).astype(np.float64)


def scored_spots(y, heldout, mask_zero_response: bool) -> np.ndarray:
    """Held-out spots that count in the loss; with the mask on, y == 0 marks a dropout, not an observation."""
    heldout = np.asarray(heldout, dtype=bool)
    return heldout & (np.asarray(y) != 0) if mask_zero_response else heldout


def predict(X, W, covariate_part=None) -> np.ndarray:
    """ŷ = ⟨x_i, W_i⟩ for W of shape (n, p) → (n,) or (n, B, p) → (n, B)."""
    X = np.asarray(X)
    W = np.asarray(W)
    pred = np.einsum("np,np->n", X, W) if W.ndim == 2 else np.einsum("np,nbp->nb", X, W)
    return pred if covariate_part is None else pred + covariate_part


def neighbour_average(W, coords, train, k: int = 7) -> np.ndarray:
    """W with each held-out row replaced by the mean of its k nearest *training* spots in space."""
    W = np.array(W, copy=True)
    xy = validate_coords(coords, source="coordinates")
    train = np.asarray(train, dtype=bool)
    held = np.flatnonzero(~train)
    if held.size == 0:
        return W
    train_idx = np.flatnonzero(train)
    if train_idx.size == 0:
        raise S3RInputError("every spot is held out; a neighbour average needs training spots")
    k = int(min(k, train_idx.size))
    _, nearest = cKDTree(xy[train_idx]).query(xy[held], k=k)
    nearest = train_idx[np.asarray(nearest).reshape(held.size, k)]
    W[held] = W[nearest].mean(axis=1)
    return W


def map_pieces(problem: Problem, W, rtol: float = 1e-3) -> np.ndarray:
    """(B,) size of each fitted map: its degrees of freedom, for choosing the simplest of equally good models.

    For ``tv`` the number of non-zero constant pieces summed over features — the degrees of freedom of the
    fused lasso (Tibshirani & Taylor 2011): spots joined by an edge with equal coefficients form one piece.
    Other smoothness modes do not fuse, so there it is the number of non-zero coefficients. Entries within
    ``rtol`` × the map's largest |coefficient| count as equal (tuning stops its solves early).

    Tuning calls this for every trial on every fold, so the piece graph has one node per non-zero entry only
    (zero entries belong to no piece; sparse maps at 10⁵ spots stay cheap): cost follows the map's support.
    """
    W = np.asarray(W, dtype=np.float64)
    n, B, p = W.shape
    out = np.zeros(B, dtype=np.int64)
    edges = np.asarray(problem.graph.edges) if problem.graph is not None and problem.smooth == "tv" else None
    for b in range(B):
        Wb = W[:, b, :]
        tol = rtol * float(np.abs(Wb).max())
        nonzero = np.abs(Wb) > tol
        if tol == 0.0 or edges is None:
            out[b] = int(nonzero.sum())
            continue
        cols = np.flatnonzero(nonzero.any(axis=0))
        Wc, nz = Wb[:, cols], nonzero[:, cols]
        node = np.full(nz.shape, -1, dtype=np.int64)
        node[nz] = np.arange(int(nz.sum()))  # one id per non-zero (spot, feature) entry
        a, c = edges[:, 0], edges[:, 1]
        same = (np.abs(Wc[a] - Wc[c]) <= tol) & nz[a] & nz[c]  # (edges, non-zero features)
        e, j = np.nonzero(same)
        size = int(nz.sum())
        joined = sp.coo_matrix((np.ones(e.size), (node[a[e], j], node[c[e], j])), shape=(size, size))
        out[b] = connected_components(joined, directed=False)[0]
    return out


def heldout_mse(y, pred, scored) -> np.ndarray:
    """Mean squared error over the scored spots, per problem when ``pred`` is (n, B)."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    scored = np.asarray(scored, dtype=bool)
    if not scored.any():
        return np.full(pred.shape[1:] if pred.ndim == 2 else (), np.nan)
    resid = pred[scored] - (y[scored, None] if pred.ndim == 2 else y[scored])
    return np.mean(resid**2, axis=0)


def heldout_deviance(y, eta, scored, family) -> np.ndarray:
    """Mean unit deviance over the scored spots per problem (``eta`` (n, B): linear predictor with offset)."""
    y = np.asarray(y, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    scored = np.asarray(scored, dtype=bool)
    if not scored.any():
        return np.full(eta.shape[1], np.nan)
    Y = torch.as_tensor(np.broadcast_to(y[scored, None], eta[scored].shape).copy())
    E = torch.as_tensor(eta[scored])
    return (2.0 * family.loss(Y, E)).mean(0).numpy()


def reference_theta(y, offset=None) -> float:
    """A negative binomial θ for tuning when the final fit estimates θ: the ML θ of the intercept (+ offset)
    model. It fixes one deviance scale for every trial and fold, so held-out losses stay comparable (each
    trial re-estimating θ would score trials on different scales); it errs towards overdispersion."""
    from s3r.glm.families import NegativeBinomial, estimate_theta
    from s3r.glm.metrics import null_eta

    Y = torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(-1, 1))
    off = None if offset is None else torch.as_tensor(np.asarray(offset, dtype=np.float64).reshape(-1, 1))
    w = torch.ones(Y.shape[0], dtype=torch.float64)
    fam, theta = NegativeBinomial(), torch.tensor([10.0], dtype=torch.float64)
    for _ in range(50):
        fam.set_theta(theta)
        new = estimate_theta(Y, fam.mean(null_eta(fam, Y, w, off)), w.unsqueeze(1), theta)
        done = float((new - theta).abs().max() / theta.max()) < 1e-8
        theta = new
        if done:
            break
    return float(theta[0])


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
    dual: np.ndarray | None  # (m, B, p)
    step: np.ndarray  # (B,)
    converged: np.ndarray  # (B,) bool
    iterations: np.ndarray  # (B,)
    seconds: float


CPU_BATCH = 2  # parameter sets per batched solve on a CPU (see solve_fold)


def solve_fold(
    problem: CVProblem, params: list[dict], folds, fold: int, *, tol: float = 1e-2, max_iter: int = 500,
    chunk: int = 100, warm: dict | None = None, batch: int = 0,
) -> FoldSolution:
    """Solve every parameter set on one fold, ``batch`` at a time in one batched solve (held-out spots weighted 0).

    Each batch is solved in chunks of ``chunk`` iterations; converged problems leave it between chunks (their
    state carried exactly) and the next parameter sets take their places, so one slow set does not hold the
    rest in the loop. ``batch`` 0 means all at once on a GPU and ``CPU_BATCH`` on a CPU, where a batch whose
    edge-sized arrays outgrow the cache costs more per problem than two small ones (1.6× at 1,000 spots × 100
    features, batch 10 against 2). ``warm`` holds per-problem start values (W, data_dual, dual, step arrays
    stacked on axis 1 / 0).
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
    converged = np.zeros(B, dtype=bool)
    iterations = np.zeros(B, dtype=np.int64)
    start = time.perf_counter()
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for t, problem in enumerate(problems):
        lo, hi = offsets[t], offsets[t + 1]
        zero = np.zeros(B, dtype=bool)
        zero[lo:hi] = zero_is_optimal(problem, weights, alpha[lo:hi], beta[lo:hi])
        if zero.any():  # exact: no solve needed, and W = 0 (covariates at their own fit) is what the solver would reach
            state = _scatter_state(state, _zero_state(problem, weights, int(zero.sum())), np.flatnonzero(zero), n, B)
            converged[zero] = True
    queue = np.flatnonzero(~converged)
    if batch <= 0:
        batch = CPU_BATCH if first.device.type == "cpu" else max(1, queue.size)
    while queue.size:
        active, queue = queue[:batch], queue[batch:]
        budget = int(min(chunk, max_iter - iterations[active].max()))
        take = lambda a, axis=1: None if a is None else np.take(a, active, axis=axis)  # noqa: E731
        step0 = take(state["step"], 0)
        if step0 is not None and not np.all(np.isfinite(step0) & (step0 > 0)):
            step0 = None  # some problem never ran (cold, or W = 0 screened): let the solver pick its steps
        res = solve_batch(
            first.X, Y[:, active], smooth=first.smooth, operator=first.operator,
            lambda_smooth=lam[active], alpha=alpha[active], beta=beta[active], weights=weights, free_rows=free[:, active],
            covariates=first.covariates, penalty_factor=first.penalty_factor, W0=take(state["W"]), gamma0=take(state["gamma"], 0),
            data_dual0=_t(take(state["data_dual"]), first), dual0=_t(take(state["dual"]), first), step0=step0, tol=tol,
            max_iter=budget, device=first.device, dtype=first.dtype,
        )
        done = np.asarray(res.converged, dtype=bool)
        used = np.where(done, np.asarray(res.iterations), budget)
        iterations[active] += used
        out = {
            "W": res.W.cpu().numpy(), "gamma": None if res.gamma is None else res.gamma.cpu().numpy(),
            "data_dual": res.data_dual.cpu().numpy(), "dual": None if res.dual is None else res.dual.cpu().numpy(),
            "step": np.asarray(res.step),
        }
        state = _scatter_state(state, out, active, n, B)
        converged[active] = done
        queue = np.concatenate([active[~done & (iterations[active] < max_iter)], queue])
    seconds = time.perf_counter() - start
    part = lambda a, t, axis=1: None if a is None else np.take(a, np.arange(offsets[t], offsets[t + 1]), axis=axis)  # noqa: E731
    return [
        FoldSolution(
            W=part(state["W"], t), gamma=part(state["gamma"], t, 0), data_dual=part(state["data_dual"], t),
            dual=part(state["dual"], t), step=part(state["step"], t, 0), converged=converged[offsets[t]:offsets[t + 1]],
            iterations=iterations[offsets[t]:offsets[t + 1]], seconds=seconds,
        )
        for t in range(len(problems))
    ]


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


def _zero_state(problem: CVProblem, weights, count: int) -> dict:
    """The solver state at W = 0 with the covariates at their own fit, for ``count`` screened problems."""
    n, dt = problem.n_spots, _np_dtype(problem)
    g0 = problem.null_gamma(weights)
    eta = problem.null_eta(weights) if g0 is None else problem.covariates @ g0
    gamma = None if g0 is None else np.repeat(g0[None].astype(dt), count, axis=0)
    # the data dual at that optimum, v_i = 2c_i(ŷ_i − y_i); every state entry is a plain numeric array
    v = ((2.0 / n) * weights * (eta - problem.y)).astype(dt)
    return {"W": np.zeros((n, count, problem.X.shape[1]), dtype=dt), "gamma": gamma,
            "data_dual": np.repeat(v[:, None], count, axis=1), "dual": None, "step": np.full(count, np.nan)}


def _solve_fold_glm(problem: CVProblem, params: list[dict], folds, fold: int, *, tol: float, max_iter: int, warm: dict | None) -> FoldSolution:
    """One batched solve with a GLM data fit (no chunking: restarting would discard the backtracked step and the
    smoothness duals, which this solver cannot take back as a warm start); W and γ warm-start it."""
    from s3r.solver.smooth_datafit_pd import solve_glm_batch

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
        data_dual=np.zeros((n, B), dtype=_np_dtype(problem)), dual=None if res.dual is None else res.dual.cpu().numpy(),
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


def null_loss(problem: Problem, folds, fold: int) -> float:
    """Held-out loss of the covariates-only model (the intercept) fitted on the training spots: the yardstick a
    spatially varying effect has to beat."""
    held = heldout_mask(folds, fold)
    eta = problem.null_eta(training_weights(folds, fold))
    scored = scored_spots(problem.nonzero, held, problem.mask_zero_response)
    if not problem.gaussian:
        return float(heldout_deviance(problem.y, eta[:, None], scored, problem.glm_family())[0])
    return float(problem.to_user_loss(heldout_mse(problem.y, eta[:, None], scored))[0])


TREND_LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # relative to the trend's own λ scale


def trend_losses(problem: Problem, folds, fold: int, predictor: str = "graph", *, k: int = 7, tol: float = 1e-2,
                 max_iter: int = 500, chunk: int = 100) -> list[float]:
    """Held-out losses of the spatial trend alone (``Problem.spatial_trend``) over ``TREND_LAMBDAS``, on one fold.

    The trend's λ path is relative to its own constant-map scale, so it needs no setting; the selection keeps the
    path's best value, which favours the trend, i.e. makes "effect found" harder to claim, not easier.
    """
    trend = problem.spatial_trend()
    scale = trend.natural_scales()["lambda_smooth"]
    params = [{"lambda_smooth": r * scale, "alpha": 0.0, "beta": 0.0} for r in TREND_LAMBDAS]
    solution = solve_fold(trend, params, folds, fold, tol=tol, max_iter=max_iter, chunk=chunk)
    return [float(v) for v in fold_losses(trend, solution, folds, fold, predictor, k=k)]


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
        else:
            full = np.array(full, dtype=value.dtype, copy=True)
        index = [slice(None)] * value.ndim
        index[axis] = active
        full[tuple(index)] = value
        new[key] = full
    return new


def fold_losses(problem: CVProblem, solution: FoldSolution, folds, fold: int, predictor: str = "graph", k: int = 7) -> np.ndarray:
    """Held-out loss per problem of the batch: MSE (gaussian) or mean deviance (count families, offset included);
    ``graph`` uses the fitted held-out rows as they are."""
    if predictor not in PREDICTORS:
        raise S3RInputError(f"unknown predictor {predictor!r}; use one of {', '.join(PREDICTORS)}")
    held = heldout_mask(folds, fold)
    W = solution.W.astype(np.float64)
    if predictor == "neighbours":
        W = np.stack([neighbour_average(W[:, b], problem.coords, ~held, k) for b in range(W.shape[1])], axis=1)
    pred = predict(problem.X, W)
    if problem.covariates is not None and solution.gamma is not None:
        pred = pred + problem.covariates @ solution.gamma.astype(np.float64).T
    scored = scored_spots(problem.nonzero, held, problem.mask_zero_response)
    if not problem.gaussian:
        eta = pred if problem.offset is None else pred + problem.offset[:, None]
        return heldout_deviance(problem.y, eta, scored, problem.glm_family())
    return problem.to_user_loss(heldout_mse(problem.y, pred, scored))


def cross_validate(
    problem: CVProblem, params: list[dict], folds, *, predictor: str = "graph", tol: float = 1e-2, max_iter: int = 500,
) -> np.ndarray:
    """(n_folds, B) held-out loss (MSE, or mean deviance for count families) of each parameter set on each fold."""
    folds = np.asarray(folds)
    return np.stack([
        fold_losses(problem, solve_fold(problem, params, folds, f, tol=tol, max_iter=max_iter), folds, f, predictor)
        for f in np.unique(folds)
    ])
