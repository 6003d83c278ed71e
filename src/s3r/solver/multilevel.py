"""Coarse-to-fine warm start: solve the problem restricted to W = P W_c on aggregated spots, then refine.

The primal–dual iteration moves the smoothness dual one graph hop per step, so its iteration count grows with the
graph's diameter (benchmarks/README.md, sessions 6–8). Aggregating spots by heavy-edge matching on the spot graph
shortens the graph: a problem whose coefficient rows are constant per aggregate (W = P W_c, P the 0/1 spot →
aggregate map) is solved first, its solution prolongated as the warm start of the next finer level, down to the
original problem, which is solved to its usual certificate — so the answer and its exactness are unchanged.

The restricted problem is exact, not an approximation of the data: every spot keeps its own row of the data fit,
predicting ⟨x_i, W_c[a(i)]⟩; the graph term of W = P W_c is the graph term of the aggregate graph whose edge (a, b)
carries the summed weight of the fine edges between a and b (tv; the root of the summed squares for the
quadratic smoothness); the ℓ1 term is α Σ_a |a| |W_c[a]| and the ℓ2 group norm ‖√|a| ⊙ W_c[:, j]‖₂. The levels
are solved in u = √|a| W_c, where the group norm is the plain one (its prox stays closed form) and the ℓ1 term
gets the row weight √|a| (:class:`SparseGroupLasso` ``row_weight``), so the existing PDHG and working sets run
unchanged on a data fit that gathers (:class:`AggregateLoss`) and a general sparse graph operator.

Prolongation: W = P W_c; the dual of a fine edge between two aggregates is the coarse edge's dual (with the
orientation's sign; scaled by the weight ratio for the quadratic smoothness), which keeps Pᵀ Kᵀ U = K_cᵀ U_c;
edges inside an aggregate start at zero; the data dual (per spot) carries over as it is. The coarse solution's
support is the next level's initial working set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from s3r.solver.datafit import SquaredLoss
from s3r.solver.operators import IncidenceOperator, SparseMatrixOperator
from s3r.solver.penalties import GraphQuadratic, SparseGroupLasso, batch_norm

MATCH_ROUNDS = 6  # handshake rounds of one heavy-edge matching (each matches mutual best neighbours)
LEVEL_RATIO = 8.0  # spots per aggregate grow by at least this factor from one solved level to the next
COARSEST = 300  # matching stops once a level has at most this many aggregates
COARSE_TOL = 1e-3  # relative residual to which the coarse levels are solved (they only warm-start the next)
PASS_STEP = True  # hand each level its coarser level's primal step (10⁴ medium: 3,410 fine iterations against 4,170 from the initial step)
AUTO_MIN_SPOTS = 1_000  # coarsen="auto" uses the levels from this many spots on (10³: 1.2–1.3× less CPU, benchmarks/README.md)
# ... and up to this many (None: no limit). Sessions 9–12 capped it at 30,000: at 10⁵ spots the fine level stalled
# in float32 because the excluded columns' duals were dropped between levels; with them carried (session 13) the
# fine level converges in float32 and the levels win at 10⁵ too (benchmarks/README.md, session 14)
AUTO_MAX_SPOTS: int | None = None


@dataclass
class Level:
    """One aggregation: ``agg`` maps the finer level's nodes to this level's, and its graph in those terms."""

    agg: np.ndarray  # (n_finer,) aggregate of each finer node
    size: np.ndarray  # (n_c,) number of original spots per aggregate
    edges: np.ndarray  # (m_c, 2) aggregate pairs, a < b
    weights: np.ndarray  # (m_c,) operator weight of each aggregate edge
    edge_map: np.ndarray  # (m_finer,) coarse edge of each finer edge, −1 inside an aggregate
    edge_sign: np.ndarray  # (m_finer,) ±1: orientation of the finer edge against its coarse edge


def _match(n: int, edges: np.ndarray, score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heavy-edge matching by handshakes: mutual best neighbours pair up; (n,) aggregate index per node.

    A node left unmatched once its neighbours are all taken joins its best neighbour's pair (so the number of
    nodes about halves per matching even on graphs where greedy matching strands many nodes)."""
    mate = np.full(n, -1)
    score = score * (1 + 1e-9 * rng.random(score.size))  # break ties at random, deterministically per seed
    src, dst = edges[:, 0], edges[:, 1]
    for _ in range(MATCH_ROUNDS):
        open_e = (mate[src] < 0) & (mate[dst] < 0) & (src != dst)
        if not open_e.any():
            break
        best = _best_neighbour(n, src[open_e], dst[open_e], score[open_e])
        cand = np.flatnonzero(best >= 0)
        mutual = cand[best[best[cand]] == cand]
        mate[mutual] = best[mutual]
    leader = np.where(mate < 0, np.arange(n), np.minimum(np.arange(n), mate))
    lone = np.flatnonzero(mate < 0)
    if lone.size:  # attach a stranded node to its best (matched) neighbour's pair
        best = _best_neighbour(n, src, dst, score, only=mate < 0)
        join = lone[best[lone] >= 0]
        leader[join] = leader[best[join]]
    _, agg = np.unique(leader, return_inverse=True)
    return agg


def _best_neighbour(n, src, dst, score, only=None) -> np.ndarray:
    """(n,) the neighbour of highest score of each node (−1 for none); ``only`` restricts the nodes asking."""
    nodes, nbrs, sc = np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([score, score])
    if only is not None:
        keep = only[nodes] & ~only[nbrs]
        nodes, nbrs, sc = nodes[keep], nbrs[keep], sc[keep]
    best = np.full(n, -1)
    if nodes.size:
        order = np.lexsort((-sc, nodes))
        first = order[np.r_[True, nodes[order][1:] != nodes[order][:-1]]]
        best[nodes[first]] = nbrs[first]
    return best


def _contract(edges, weights, agg, quadratic: bool):
    """The aggregate graph of one matching and the map of finer edges onto its edges."""
    a, b = agg[edges[:, 0]], agg[edges[:, 1]]
    inside = a == b
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo.astype(np.int64) * (int(agg.max()) + 1) + hi
    keys, inv = np.unique(key[~inside], return_inverse=True)
    w = np.abs(weights[~inside])
    merged = np.sqrt(np.bincount(inv, w * w)) if quadratic else np.bincount(inv, w)
    n_c = int(agg.max()) + 1
    pairs = np.stack([keys // n_c, keys % n_c], axis=1)
    edge_map = np.full(edges.shape[0], -1)
    edge_map[~inside] = inv
    sign = np.where(a < b, 1.0, -1.0) * np.sign(np.where(weights == 0, 1.0, weights))
    return pairs, merged, edge_map, sign


def build_levels(edges: np.ndarray, weights: np.ndarray, n: int, *, quadratic: bool = False, seed: int = 0) -> list[Level]:
    """Aggregation levels from the spot graph, finest first, each ≥ ``LEVEL_RATIO`` times coarser than the last.

    Matchings are repeated (normalised heavy edge: weight / (|a| |b|), which keeps aggregates of even size) until
    at most ``COARSEST`` aggregates remain; the returned levels compose consecutive matchings."""
    rng = np.random.default_rng(seed)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64)
    levels: list[Level] = []
    size = np.ones(n)
    cur_edges, cur_w, cur_n = edges, weights, n
    comp_agg, comp_map, comp_sign = np.arange(n), np.arange(edges.shape[0]), np.ones(edges.shape[0])
    base_size = 1.0  # mean aggregate size at the last solved level
    while cur_n > COARSEST and cur_edges.shape[0]:
        score = np.abs(cur_w) / (size[cur_edges[:, 0]] * size[cur_edges[:, 1]])
        agg = _match(cur_n, cur_edges, score, rng)
        n_c = int(agg.max()) + 1
        if n_c > 0.9 * cur_n:  # matching no longer coarsens (a graph of isolated nodes)
            break
        pairs, merged, edge_map, sign = _contract(cur_edges, cur_w, agg, quadratic)
        size = np.bincount(agg, weights=size, minlength=n_c)
        comp_agg = agg[comp_agg]
        ok = comp_map >= 0
        comp_sign = np.where(ok, comp_sign * sign[np.where(ok, comp_map, 0)], 0.0)
        comp_map = np.where(ok, edge_map[np.where(ok, comp_map, 0)], -1)
        cur_edges, cur_w, cur_n = pairs, merged, n_c
        if n / n_c >= LEVEL_RATIO * base_size or cur_n <= COARSEST:
            levels.append(Level(comp_agg, size.copy(), pairs, merged, comp_map, comp_sign))
            comp_agg, comp_map, comp_sign = np.arange(n_c), np.arange(pairs.shape[0]), np.ones(pairs.shape[0])
            base_size = n / n_c
    return levels


class AggregateLoss(SquaredLoss):
    """The squared loss of every spot with W's rows shared by aggregates: ŷ_i = ⟨x_i / √|a(i)|, u[a(i)]⟩.

    u = √|a| W_c (module docstring). ``X`` holds the scaled rows x_i / √|a(i)|, so restricting columns and the
    per-spot dual are those of :class:`SquaredLoss`; only M and Mᵀ gather and scatter through ``agg``."""

    def __init__(self, X, y, weights, covariates, agg: torch.Tensor, size: torch.Tensor):
        super().__init__(X, y, weights, covariates)
        self.agg, self.size = agg, size
        self.rows = int(size.shape[0])

    @classmethod
    def of(cls, datafit: SquaredLoss, agg: torch.Tensor, size: torch.Tensor) -> "AggregateLoss":
        scale = torch.rsqrt(size.to(datafit.X.dtype))[agg].unsqueeze(-1)
        return cls(datafit.X * scale, datafit.y, datafit.o, datafit.Z, agg, size)

    def restrict(self, J):
        return AggregateLoss(self.X[:, J].contiguous(), self.y, self.o, self.Z, self.agg, self.size)

    def predict(self, W, gamma, covariates=True):
        pred = torch.linalg.vecdot(W.index_select(0, self.agg), self.X.unsqueeze(1))
        if covariates and self.Z is not None and gamma is not None:
            pred = pred + self.Z @ gamma.T
        return pred

    def adjoint(self, v):
        gW = torch.zeros((self.rows, v.shape[1], self.X.shape[1]), dtype=v.dtype, device=v.device)
        gW.index_add_(0, self.agg, v.unsqueeze(-1) * self.X.unsqueeze(1))
        return gW, (v.T @ self.Z if self.Z is not None else None)

    def add_adjoint_(self, V, v):
        return V.index_add_(0, self.agg, v.unsqueeze(-1) * self.X.unsqueeze(1))

    def adjoint_norm(self, v):
        """(B,) ‖Mᵀv‖: the aggregates' rows sum spots, so no closed form from the spots' norms."""
        return batch_norm(self.adjoint(v)[0])

    def column_gradients(self, v, J):
        G = torch.zeros((self.rows, v.shape[1], J.numel()), dtype=v.dtype, device=v.device)
        return G.index_add_(0, self.agg, v.unsqueeze(-1) * self.X[:, J].unsqueeze(1))

    def spot_rows(self, T):
        return T.index_select(0, self.agg)

    def row_norms2(self):
        """‖x̃_i‖² · |a(i)| = ‖x_i‖²: M's block of aggregate a has ‖Σ_a^{1/2} X̃_a‖² ≤ Σ_{i∈a} σ_i ‖x̃_i‖², so the
        per-spot dual steps σ_i ∝ 1/(‖x̃_i‖² |a|) keep the step condition of the fine problem."""
        return (self.X * self.X).sum(1, keepdim=True) * self.size.to(self.X.dtype)[self.agg].unsqueeze(-1)


def coarse_operator(level: Level, device, dtype) -> SparseMatrixOperator:
    """K_c D^{-1/2}: the aggregate graph's incidence in the u coordinates (rows: w_ab/√|a|, −w_ab/√|b|)."""
    m, n_c = level.edges.shape[0], level.size.size
    r = np.repeat(np.arange(m), 2)
    c = level.edges.reshape(-1)
    inv = 1.0 / np.sqrt(level.size)
    vals = np.stack([level.weights * inv[level.edges[:, 0]], -level.weights * inv[level.edges[:, 1]]], axis=1).reshape(-1)
    return SparseMatrixOperator(sp.csr_matrix((vals, (r, c)), shape=(m, n_c)), device, dtype)


def _prolong(res, finer_size: np.ndarray, level: Level, finer_weights: np.ndarray | None, quadratic: bool):
    """(u, U) on the finer level from a coarse level's solution (module docstring)."""
    W = res.W
    dev, dt = W.device, W.dtype
    agg = torch.as_tensor(level.agg, device=dev)
    ratio = np.sqrt(finer_size / level.size[level.agg])  # u_f = √|f| W_c = √(|f|/|a|) u_c
    u = W.index_select(0, agg) * torch.as_tensor(ratio, dtype=dt, device=dev).view(-1, 1, 1)
    U = None
    if res.dual is not None:
        inside = level.edge_map < 0
        scale = level.edge_sign.copy()
        if quadratic:  # U_e = (w_e / w_ab) U_ab keeps Kᵀ U and the quadratic's optimality U = 2λ K W
            scale = scale * np.abs(finer_weights) / level.weights[np.where(inside, 0, level.edge_map)]
        scale[inside] = 0.0
        U = res.dual.index_select(0, torch.as_tensor(np.where(inside, 0, level.edge_map), device=dev))
        U.mul_(torch.as_tensor(scale, dtype=dt, device=dev).view(-1, 1, 1))
    return u, U


def solve_coarse_to_fine(datafit, penalty, smooth, K: IncidenceOperator, W0, gamma0, *, levels: list[Level], solve, tol: float,
                         max_iter: int, callback=None, v0=None, U0=None, tau0=None, own_W0: bool = False, own_U0: bool = False):
    """Solve the levels coarsest first, each warm-started from the one above, then the original problem.

    ``solve`` is the solver of one level with the usual signature, handover keywords included (``own_W0``,
    ``own_U0``: a start made for the call, which the solver may write into and return; s3r.solver.batch): the
    working-set loop around the PDHG. Each level's starts are made here, prolongated from the level above, and handed
    over. The caller's ``W0`` is read for its shape only (a cold start), ``U0`` only without levels.
    The result is the original problem's, with ``multilevel``: per level its aggregates, edges, iterations,
    working-set size and seconds, coarsest first (the fine solve's own figures are the result's)."""
    start = time.perf_counter()
    n, B, p = W0.shape
    dev, dt = W0.device, W0.dtype
    quadratic = isinstance(smooth, GraphQuadratic)
    fine_w = K._w.view(-1).double().cpu().numpy()
    to_level = [np.arange(n)]  # spot → aggregate of each level
    for lev in levels:
        to_level.append(lev.agg[to_level[-1]])
    res, gamma, v, tau, report = None, gamma0, v0, tau0, []
    for li in reversed(range(len(levels))):
        lev = levels[li]
        size = torch.as_tensor(lev.size, dtype=dt, device=dev)
        fit = AggregateLoss.of(datafit, torch.as_tensor(to_level[li + 1], device=dev), size)
        pen = SparseGroupLasso(penalty.alpha, penalty.beta, penalty.factor, n, torch.ones((lev.size.size, B), dtype=dt, device=dev),
                               row_weight=torch.sqrt(size))
        if res is None:
            u0, U = torch.zeros((lev.size.size, B, p), dtype=dt, device=dev), None
        else:
            u0, U = _prolong(res, lev.size, levels[li + 1], lev.weights, quadratic)
        t0 = time.perf_counter()
        res = solve(fit, pen, smooth, coarse_operator(lev, dev, dt), u0, gamma, v0=v, U0=U, tau0=tau if PASS_STEP else None,
                    tol=max(tol, COARSE_TOL), max_iter=max_iter, own_W0=True, own_U0=U is not None)
        gamma, v = res.gamma, res.data_dual
        tau = torch.as_tensor(res.step, dtype=dt, device=dev) if res.step is not None and np.all(np.isfinite(res.step)) else None
        report.append({"aggregates": int(lev.size.size), "edges": int(lev.edges.shape[0]), "iterations": np.asarray(res.iterations).tolist(),
                       "working_set": (res.working_set or {}).get("size"), "converged": np.asarray(res.converged).tolist(),
                       "seconds": time.perf_counter() - t0})
    if res is None:
        return solve(datafit, penalty, smooth, K, W0, gamma0, v0=v0, U0=U0, tau0=tau0, tol=tol, max_iter=max_iter, callback=callback,
                     own_W0=own_W0, own_U0=own_U0)
    W, U = _prolong(res, np.ones(n), levels[0], fine_w, quadratic)
    # the coarse level's state lives on in (W, U); its design (n × p, scaled rows) and start are not needed on the fine level
    res = fit = pen = u0 = None
    t0 = time.perf_counter()
    final = solve(datafit, penalty, smooth, K, W, gamma, v0=v, U0=U, tau0=tau if PASS_STEP else None, tol=tol, max_iter=max_iter,
                  callback=callback, own_W0=True, own_U0=U is not None)
    final.multilevel = {"levels": report, "fine_iterations": np.asarray(final.iterations).tolist(), "fine_seconds": time.perf_counter() - t0,
                        "coarse_iterations": int(sum(max(r["iterations"]) for r in report))}
    final.seconds = time.perf_counter() - start
    return final


def coarse_levels(coarsen, K, smooth, free: torch.Tensor, *, cold: bool) -> list[Level]:
    """The levels a solve uses: none for warm starts, masked rows, graphs that are not edge incidences, or when
    ``coarsen`` is False / ``"auto"`` below ``AUTO_MIN_SPOTS`` (or above ``AUTO_MAX_SPOTS`` when set) spots."""
    if coarsen is False or not cold or smooth is None or not isinstance(K, IncidenceOperator) or not bool((free > 0).all()):
        return []
    n = K.shape[1]
    if coarsen == "auto" and (n < AUTO_MIN_SPOTS or (AUTO_MAX_SPOTS is not None and n > AUTO_MAX_SPOTS)):
        return []
    edges = torch.stack([K._src, K._dst], 1).cpu().numpy()
    return build_levels(edges, K._w.view(-1).double().cpu().numpy(), n, quadratic=isinstance(smooth, GraphQuadratic))
