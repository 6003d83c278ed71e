"""Warm start from the spatially constant model: W = 1 wᵀ with w the global sparse regression, plus its duals.

Why: at a λ that fuses the whole section into one constant map (the tuned λ on a real lymph node, 1,000 spots),
PDHG has to find that constant through edge duals that move one graph hop per iteration: the plain solve ran
40,000 iterations at relative residuals 5e-3, its error almost entirely a constant row (benchmarks/README.md,
session 10; the proportions' collinearity with the intercept was measured not to be the cause). The constant model
is a p-variable lasso, solved exactly by coordinate descent; its data dual is closed form (v_i = 2c_i(ŷ_i − y_i));
the edge dual is the least-squares flow U = Kφ, KᵀKφ = −(Mᵀv + g), carrying every spot's gradient imbalance across
the graph. When that flow fits in the box |U| ≤ λ the start is a KKT point and PDHG only certifies it.

Used for cold gaussian tv solves on a connected graph with no pinned rows (see :func:`constant_start`).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

CD_TOL, CD_SWEEPS = 1e-13, 20_000  # coordinate descent on p variables: cheap even at its cap
FLOW_BLOCK = 32  # columns per block of the flow's Laplacian solves


def normal_equations(X, o, Z):
    """(design with the covariates projected out, its weighted Gram matrix, the projection): the part of the
    global lasso shared by every problem of a batch with the same spot weights (an n·p² product at large n)."""
    n = X.shape[0]
    proj = None
    if Z is not None:
        # weighted least squares on the few covariates through one thin QR: an SVD solve per call with p right-hand
        # sides cost 1.5 CPU s at 10⁴ × 1,000
        sw = np.sqrt(o)[:, None]
        Q, R = np.linalg.qr(sw * Z)
        proj = lambda A: A - Z @ np.linalg.lstsq(R, Q.T @ (sw * A), rcond=None)[0]  # noqa: E731
    Xr = X if proj is None else proj(X)
    return Xr, (Xr * o[:, None]).T @ Xr / n, proj


def covariate_fit(Z: np.ndarray, r: np.ndarray, o: np.ndarray) -> np.ndarray:
    """(q,) the covariates' least-squares fit to ``r`` under observation weights ``o``: where the covariates sit at
    their exact optimum given everything else (W = 0, a start map, the lasso's w)."""
    sw = np.sqrt(np.asarray(o, dtype=np.float64)).reshape(-1)
    return np.linalg.lstsq(sw[:, None] * Z, sw * r, rcond=None)[0]


def global_lasso(X, y, o, Z, pen, prepared=None) -> tuple[np.ndarray, np.ndarray | None]:
    """argmin_{w, γ} (1/n) Σ o_i (y_i − x_i·w − z_i·γ)² + Σ_j pen_j |w_j|: γ eliminated by weighted least
    squares, then cyclic coordinate descent (converges on a rank-deficient X; the ℓ1 term picks the point).
    ``prepared``: :func:`normal_equations` of (X, o, Z), when the caller shares it across problems."""
    n, p = X.shape
    Xr, A, proj = normal_equations(X, o, Z) if prepared is None else prepared
    yr = y if proj is None else proj(y[:, None])[:, 0]
    b = (Xr * o[:, None]).T @ yr / n
    w = np.zeros(p)
    diag = np.diag(A)
    for _ in range(CD_SWEEPS):
        biggest = 0.0
        for j in range(p):
            if diag[j] <= 0:
                continue
            rho = b[j] - A[j] @ w + diag[j] * w[j]
            new = np.sign(rho) * max(abs(rho) - pen[j] / 2, 0.0) / diag[j]
            biggest = max(biggest, abs(new - w[j]) * np.sqrt(diag[j]))
            w[j] = new
        if biggest <= CD_TOL * max(np.sqrt(max(yr @ (o * yr) / n, 0.0)), 1e-300):
            break
    gamma = None if Z is None else covariate_fit(Z, y - X @ w, o)
    return w, gamma


class FlowSolver:
    """Least-squares edge flows U = Kφ with KᵀKφ = D − (D's mean per connected part): the smallest edge flow with
    divergence D. One sparse LU of KᵀK grounded at one node per part, factorised once and shared by every problem
    and column (at 10⁴ spots × 100 columns 0.35 CPU s against 13.9 for the Jacobi CG it replaced; at 10⁵ the natural
    λ scale's flow 11 CPU s against 274; benchmarks/README.md, sessions 10 and 15). The constant start, the natural λ
    scale and the warm starts' duals all use this one."""

    def __init__(self, K: sp.spmatrix):
        self.K = K.tocsr()
        A = (self.K.T @ self.K).tocsc()
        self.n_components, self.labels = connected_components(abs(A), directed=False)
        grounds = np.unique(self.labels, return_index=True)[1]
        self.keep = np.setdiff1d(np.arange(A.shape[0]), grounds)
        self.lu = splu(A[self.keep][:, self.keep].tocsc()) if self.keep.size else None
        self.sizes = np.bincount(self.labels, minlength=self.n_components)

    def __call__(self, D: np.ndarray) -> np.ndarray:
        D = np.array(D, dtype=np.float64)
        means = np.stack([np.bincount(self.labels, weights=col, minlength=self.n_components) for col in D.T], axis=1) / self.sizes[:, None]
        D -= means[self.labels]
        phi = np.zeros_like(D)
        if self.lu is not None:
            phi[self.keep] = self.lu.solve(np.ascontiguousarray(D[self.keep]))
        return np.asarray(self.K @ phi)


_SHARED = threading.local()  # per thread: the last graph's FlowSolver (the factors are not shared across threads)
# factors larger than this are not kept between calls: a kept factor lives through the solves that follow, and at
# 10⁵–10⁶ spots one factorisation is cheap beside them while its memory is not
FLOW_CACHE_BYTES = 256 << 20


def flow_solver(K: sp.spmatrix) -> FlowSolver:
    """The :class:`FlowSolver` of ``K``, factorised once for a run of calls on the same graph (compared by content).

    Why: a tuning fold job asks for the flows of one graph ~70 times (each target's natural λ scale, its trend's, the
    warm starts' duals): 68 identical sparse LU factorisations were 0.8 of a 52 CPU-s job (benchmarks/README.md,
    session 28). One entry per thread, and only factors under ``FLOW_CACHE_BYTES``."""
    K = K.tocsr()
    digest = hashlib.blake2b(digest_size=16)
    for part in (np.asarray(K.shape, dtype=np.int64), K.indptr, K.indices, K.data):
        digest.update(np.ascontiguousarray(part).view(np.uint8))
    key = (str(K.dtype), digest.hexdigest())
    cached = getattr(_SHARED, "entry", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    _SHARED.entry = None  # the old factor goes before the new one is built
    solver = FlowSolver(K)
    if solver.lu is None or solver.lu.nnz * (np.dtype(np.float64).itemsize + np.dtype(np.int32).itemsize) <= FLOW_CACHE_BYTES:
        _SHARED.entry = (key, solver)
    return solver


def constant_start(X, Y, O, Z, alpha, beta, pf, lam, K: sp.spmatrix) -> dict:
    """Primal and dual start at the constant model, per problem of the batch.

    Returns W0 (n, B, p), gamma0 (B, q) or None, data_dual0 (n, B), dual0 (m, B, p) and ``flow_ratio`` (B,):
    max |U| / λ of the least-squares flow: ≤ 1 makes the start a KKT point (the penalty's subgradient is taken equal
    in every spot, on a zero column the mean data gradient, which the global lasso keeps inside the subdifferential).
    A graph of several components gives only ``flow_ratio`` = ∞ (the constant model is not the fused limit there).
    """
    n, p = X.shape
    B = Y.shape[1]
    if connected_components(abs(K).T @ abs(K), directed=False)[0] > 1:  # λ → ∞ is constant per component, not across
        return {"flow_ratio": np.full(B, np.inf)}
    node_capacity = np.asarray(abs(K).sum(axis=0)).ravel()
    W0 = np.zeros((n, B, p))
    V = np.zeros((n, B))
    U0 = np.zeros((K.shape[0], B, p))
    G = None if Z is None else np.zeros((B, Z.shape[1]))
    ratio = np.zeros(B)
    prepared = normal_equations(X, O[:, 0], Z) if np.all(O == O[:, :1]) else None  # one Gram matrix for the batch
    flows = None  # factorised at the first problem that needs it
    for b in range(B):
        pen = n * (alpha[b] + beta[b]) * pf  # Σ_i|W_ij| = n|w_j| and √n‖W_j‖ = n|w_j| for a constant column
        w, gamma = global_lasso(X, Y[:, b], O[:, b], Z, pen, prepared)
        pred = X @ w + (0.0 if Z is None else Z @ gamma)
        V[:, b] = 2 * O[:, b] / n * (pred - Y[:, b])
        # the penalty's subgradient per spot: the same value in every spot (on a zero column, the mean data
        # gradient, which the global lasso's optimality keeps inside the subdifferential); the flow removes the mean
        D = -(V[:, b : b + 1] * X)
        # a node cannot send more than its edges carry: where |D_i − mean| exceeds λ Σ_e |K_ei| no flow fits the box,
        # and the Laplacian solve (the expensive part at large n) is skipped
        # (one n × p temporary, worked in place: at 10⁵ spots × 1,000 features each such array is 0.8 GB)
        excess = D - D.mean(axis=0)
        np.abs(excess, out=excess)
        if np.any(excess > lam[b] * node_capacity[:, None]):
            ratio[b:] = np.inf
            break
        flows = flow_solver(K) if flows is None else flows
        # the flow column by column in blocks, the columns whose imbalance comes nearest the box first: where the
        # start fails it fails there, and the remaining solves (one triangular pair per column) are skipped
        need = np.divide(excess, np.maximum(node_capacity, 1e-300)[:, None], out=excess).max(axis=0)
        del excess
        for cols in np.array_split(np.argsort(-need), max(1, -(-p // FLOW_BLOCK))):
            U0[:, b, cols] = flows(D[:, cols])
            ratio[b] = max(ratio[b], np.abs(U0[:, b, cols]).max() / lam[b] if lam[b] > 0 else np.inf)
            if ratio[b] > 1.0:
                break
        if ratio[b] > 1.0:  # the start is used only when every problem's flow fits: the rest need not be solved
            ratio[b + 1:] = np.inf
            break
        W0[:, b, :] = w  # (np.zeros maps untouched pages: a start that fails costs no n × B × p memory)
        if G is not None:
            G[b] = gamma
    return {"W0": W0, "gamma0": G, "data_dual0": V, "dual0": U0, "flow_ratio": ratio}
