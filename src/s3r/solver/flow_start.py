"""The smoothness dual of a primal warm start: the clipped least-squares flow of its own optimality conditions.

Why: the tuning warm-starts rounds 1–2 from an earlier trial's W and data dual only (the edge dual, edges × features
per trial, would make the fold-state files four times larger). PDHG started at a fused W with a zero edge dual has
no smoothing force at first: the map unfuses and must fuse again. At W the optimality conditions ask
KᵀU = −(Mᵀv + g) spot by spot (g ∈ ∂h(W), the sparse group lasso's subgradient), so the smallest such flow, clipped
into the dual's box, is a dual that holds the warm map's pieces together (it is the exact dual wherever it fits in
the box). On the DLPFC tuning's folds (2 targets × 10 trials, fold 0) rounds 1–2 took 5,830 and 5,900 instead of
6,360 and 7,300 problem-iterations, as many as with the earlier solution's own dual (benchmarks/README.md, session 16).

Quadratic smoothing (λ‖KW‖²) has its dual in closed form at any W: U = 2λKW.
"""

from __future__ import annotations

import numpy as np

from s3r.solver.constant_start import FLOW_BLOCK, FlowSolver, covariate_fit, flow_solver


def warm_flow_dual(X, W0, v0, alpha, beta, lam, K, *, smooth: str = "tv", penalty_factor=None, flows: FlowSolver | None = None,
                   out=None) -> np.ndarray:
    """(m, B, p) edge dual for the primal start ``W0`` (n, B, p) with data dual ``v0`` (n, B), in the solver's units.

    ``alpha``, ``beta``, ``lam`` (B,): the solver's penalties of the problems to start; ``K``: the smoothness operator
    as a scipy matrix (m × n); ``flows``: a :class:`FlowSolver` of K when the caller shares it; ``out``: an (m, B, p) array to write into (its dtype kept). Columns go in blocks of
    ``FLOW_BLOCK`` (no m × B × p float64 temporary, no float64 copy of a float32 design).
    """
    n, B, p = W0.shape
    pf = np.ones(p) if penalty_factor is None else np.asarray(penalty_factor, dtype=np.float64)
    out = np.zeros((K.shape[0], B, p), dtype=W0.dtype) if out is None else out
    if smooth == "quadratic":
        for b in range(B):
            out[:, b] = 2.0 * lam[b] * (K @ np.asarray(W0[:, b], dtype=np.float64))
        return out
    flows = flow_solver(K) if flows is None else flows
    for b in range(B):
        if not lam[b] > 0:
            out[:, b] = 0.0
            continue
        W = np.asarray(W0[:, b], dtype=np.float64)
        norms = np.sqrt((W * W).sum(axis=0))
        for cols in np.array_split(np.arange(p), max(1, -(-p // FLOW_BLOCK))):
            Wc = W[:, cols]
            # g ∈ ∂h(W) where W ≠ 0 (the lasso's sign and the group's direction); zero entries take 0 and the flow's
            # mean removal, as the constant start does for a zero column
            g = alpha[b] * np.sign(Wc) + beta[b] * np.sqrt(n) * Wc / np.maximum(norms[cols], 1e-300)
            D = -(np.asarray(v0[:, b], dtype=np.float64)[:, None] * np.asarray(X[:, cols], dtype=np.float64)) - g * pf[cols]
            out[:, b, cols] = np.clip(flows(D), -lam[b], lam[b])
    return out


def primal_start(X, y, W, *, covariates, K, lam: float, alpha: float, beta: float, smooth: str, penalty_factor=None,
                 weights=None) -> dict:
    """A whole solver start from a map alone (n, p) on the solver's scale, e.g. a CV fold's solution of the same
    problem: the covariates at their weighted least-squares fit given W, the data dual at that prediction (observation
    ``weights``, default 1) and the edge dual by :func:`warm_flow_dual`. Returns solve_batch's W0, gamma0, data_dual0, dual0."""
    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    n = X.shape[0]
    pred = np.einsum("np,np->n", X, W)
    o = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    gamma = None
    if covariates is not None:  # the covariates' fit under the same observation weights as the data fit
        Z = np.asarray(covariates, dtype=np.float64).reshape(n, -1)
        gamma = covariate_fit(Z, y - pred, o)
        pred = pred + Z @ gamma
    v = (2.0 / n) * o * (pred - np.asarray(y, dtype=np.float64))
    one = lambda a: np.atleast_1d(np.asarray(a, dtype=np.float64)).reshape(-1)[:1]  # noqa: E731
    dual = None
    if K is not None and smooth in ("tv", "graph_l1", "quadratic"):
        dual = warm_flow_dual(X, W[:, None, :], v[:, None], one(alpha), one(beta), one(lam), K, smooth=smooth,
                              penalty_factor=penalty_factor)
    return {"W0": W[:, None, :], "gamma0": None if gamma is None else gamma[None], "data_dual0": v[:, None], "dual0": dual}
