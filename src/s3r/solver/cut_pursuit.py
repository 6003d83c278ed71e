"""Cut pursuit: the tv model solved on a partition of the spots that minimum cuts refine (one gaussian problem).

Why: the primal–dual iteration moves the edge dual one graph hop per step, so its iteration count grows with the
graph's diameter — more than 20,000 at 10⁶ spots (benchmarks/README.md, sessions 20, 24) — while the answer of a tv fit
is piecewise constant with a few hundred pieces. Cut pursuit (Landrieu & Obozinski 2017; Raguet & Landrieu 2018)
works on the pieces instead:

1. **Reduced problem.** With W's rows constant on each component of a partition, the problem is one of
   components × features: each component's data fit is its Gram matrix (held as at most d pseudo-rows, d = features +
   covariates), the graph is the components' adjacency with summed edge weights — exactly the coarse levels of
   :mod:`s3r.solver.multilevel` (:class:`~s3r.solver.multilevel.AggregateLoss`), solved by the same PDHG, small.
2. **Split test.** At the reduced optimum W, per feature j, the steepest direction h ∈ {−1, 0, 1}ⁿ of the full
   objective: its directional derivative F'(W; h) = Σ_i f_i(h_i) + λ Σ_{e: W equal at both ends} w_e |h_a − h_b|, with
   f_i linear (data gradient, group-lasso gradient, λ w_e sign on the edges where W jumps, α sign where W_ij ≠ 0) or
   g_i h + α|h| where W_ij = 0. It is a minimum cut for the levels {h ≥ 1} and {h ≥ 0} (two cuts; the TV term makes
   them nest), :mod:`s3r.solver.maxflow`. min_h F' over the box is −‖s‖₁ for s the smallest subgradient, so
   ``slope`` = −min F' / Σ_i(|g_i| + α) is the optimality error of the column (0 at the optimum; convex problem).
3. **Refine** every component that the cut divides (its connected parts become components) and go to 1, until no
   feature's slope exceeds ``tol``.

Columns at zero are not split (their group norm is not separable over spots): they are left out and certified at
zero by the working sets' edge certificate (:func:`s3r.solver.certificates.check_excluded`); violators join the set.
The answer is exact: ``converged`` means every kept column's slope ≤ ``tol`` and every other column certified at zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from s3r.solver.certificates import CERT_ITER, check_excluded
from s3r.solver.datafit import SquaredLoss, covariate_solve
from s3r.solver.maxflow import Network
from s3r.solver.multilevel import AggregateLoss, Level, _contract, coarse_operator
from s3r.solver.operators import IncidenceOperator
from s3r.solver.penalties import GraphL1, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual

REDUCED_TOL = 1e-8  # relative residual of the last reduced solves (their error enters the slopes; 1e-9 reached at 10⁴–10⁵)
REDUCED_START, LOOSE_SHARE = 1e-4, 1e-2  # earlier ones only choose cuts: solved to 1e-4, then to 1% of the last slope
SPLIT_SHARE = 0.1  # a feature is split while its slope exceeds this share of tol (so the last test ends well below it)
# two entries of a column are equal (an edge on a kink) within this share of the column's largest … The reduced PDHG's
# fused values differ by ~1e-6 of it at its 1e-8 residual, and each such gap read as a jump is a false descent direction
# (λ w_e per boundary edge); a true jump this small is read as a kink, which only makes the test more conservative
EQUAL = 1e-5
EQUAL_SHARE = 10.0  # … or within this multiple of a loose reduced solve's tolerance
GRAM_LOOP = 2_000  # components up to which their Gram matrices are one matrix product each
GRAM_CHUNK = 1 << 24  # entries of the spots' outer products held at once otherwise
ENTRY_LEVELS = 8  # an entering column's real-valued direction cut into this many levels a sign (its pieces: the partition)
MAX_TRIES = 2
# saturation (Raguet & Landrieu): after a refinement, test only the spots of the components it cut; the whole graph is
# tested again once those hold, and only a test of the whole graph ends the refinements
SATURATE = True
START_ITER = 30  # FISTA iterations of the first check, at W = 0 (a ranking: nearly every column is proven there)
LONG_SEARCH = 10  # × CERT_ITER for the columns a check could neither certify nor prove, before giving up on them  # times an excluded column may join the set (a column the reduced solve returns at zero twice is left out)
MIN_ADD = 8  # features added to the set at most per check: max(MIN_ADD, the set's size)


@dataclass
class CutPursuitResult:
    W: np.ndarray  # (n, p) on the solver's scale
    gamma: np.ndarray | None  # (q,) covariates
    data_dual: np.ndarray  # (n,) v_i = 2c_i(ŷ_i − y_i)
    objective: float
    slope: float  # the largest relative optimality error of a kept column at the last split test
    converged: bool
    refinements: int
    components: int
    reduced_iterations: int
    seconds: float
    working_set: list[int] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


class _Problem:
    """The full problem's data in numpy (one problem: y, weights (n,), covariates (n, q))."""

    def __init__(self, X, y, weights, Z, alpha, beta, lam, factor, edges, w):
        self.X, self.y, self.Z = np.asarray(X, float), np.asarray(y, float).reshape(-1), Z
        self.n, self.p = self.X.shape
        self.o = np.ones(self.n) if weights is None else np.asarray(weights, float).reshape(-1)
        self.c = self.o / self.n
        self.alpha, self.beta, self.lam = float(alpha), float(beta), float(lam)
        self.factor = np.ones(self.p) if factor is None else np.asarray(factor, float)
        self.src, self.dst = np.asarray(edges[:, 0], np.int64), np.asarray(edges[:, 1], np.int64)
        self.w = np.asarray(w, float)
        self._K = None

    def incidence(self) -> IncidenceOperator:
        """The spot graph as the certificates' operator (made at the first check, kept)."""
        if self._K is None:
            self._K = IncidenceOperator(np.stack([self.src, self.dst], 1), self.w, self.n, "cpu", torch.float64)
        return self._K

    def predict(self, W, gamma, J=None):
        XJ = self.X if J is None else self.X[:, J]
        pred = np.einsum("ij,ij->i", XJ, W)
        return pred if self.Z is None or gamma is None else pred + self.Z @ gamma

    def objective(self, W, gamma, J) -> float:
        r = self.y - self.predict(W, gamma, J)
        f = self.factor[J]
        tv = self.lam * np.abs(self.w[:, None] * (W[self.src] - W[self.dst])).sum()
        return float((self.c * r * r).sum() + self.alpha * (np.abs(W).sum(0) * f).sum()
                     + self.beta * np.sqrt(self.n) * (np.sqrt((W * W).sum(0)) * f).sum() + tv)


def cut_pursuit(X, y, *, lambda_smooth: float, alpha: float, beta: float, edges: np.ndarray, edge_weights: np.ndarray,
                weights=None, covariates=None, penalty_factor=None, W0=None, tol: float = 1e-5, max_refinements: int = 60,
                max_iter: int = 20_000) -> CutPursuitResult:
    """Solve min (1/n)Σ o_i(y_i − ⟨x_i, W_i⟩ − z_iγ)² + α Σ f_j‖W_j‖₁ + β√n Σ f_j‖W_j‖₂ + λ Σ_e w_e ‖W_a − W_b‖₁ on the
    solver's scale (module docstring). ``W0``: a start whose pieces and support seed the partition and the set.
    ``max_iter``: iterations of each reduced solve."""
    start = time.perf_counter()
    P = _Problem(X, y, weights, None if covariates is None else np.asarray(covariates, float).reshape(len(y), -1),
                 alpha, beta, lambda_smooth, penalty_factor, np.asarray(edges), edge_weights)
    W0 = None if W0 is None or not np.any(W0) else np.asarray(W0, float)
    comp, C = _pieces(P, W0)
    J = np.arange(P.p) if W0 is None else np.flatnonzero(np.abs(W0).max(0) > 0)  # cold: every feature, one value each
    Wc = None if W0 is None else W0[np.unique(comp, return_index=True)[1]][:, J]
    gamma, history, iters, slope, tries = None, [], 0, np.inf, np.zeros(P.p, dtype=np.int64)
    carry, tol_now, active, flows = None, REDUCED_START, None, {}
    certificates = torch.zeros((P.src.size, 1, P.p), dtype=torch.float16)  # the excluded columns' edge certificates (z ∈ [−1, 1])
    for refinement in range(max_refinements + 1):
        t0 = time.perf_counter()
        Wc, gamma, it, state = _reduced(P, comp, C, J, Wc, gamma, carry, tol_now, max_iter)
        t1, flagged = time.perf_counter(), -1  # the excluded columns are unchecked at this W until a check says otherwise
        iters += it
        keep = np.abs(Wc).max(0) > 0  # zero columns leave the set: the excluded check decides them
        J, Wc = J[keep], Wc[:, keep]
        W = Wc[comp]
        v = 2 * P.c * (P.predict(W, gamma, J) - P.y)
        equal = max(EQUAL, EQUAL_SHARE * tol_now)
        labels, slopes = _split(P, W, v, J, equal, active, flows)
        if active is not None and not (slopes > SPLIT_SHARE * tol).any():  # the changed components hold: test every one
            active = None
            labels, slopes = _split(P, W, v, J, equal, None, flows)
        slope = float(slopes.max()) if slopes.size else 0.0
        history.append({"components": int(C), "features": int(J.size), "reduced_iterations": it, "reduced_tol": tol_now,
                        "slope": slope, "objective": P.objective(W, gamma, J), "reduced_seconds": t1 - t0,
                        "split_seconds": time.perf_counter() - t1})
        split = slopes > SPLIT_SHARE * tol
        carry = {"state": state, "parent": np.arange(C), "C_old": C, "keep": keep, "add": 0}
        loose = tol_now > REDUCED_TOL and J.size > 0
        tol_now = min(REDUCED_START, max(REDUCED_TOL, LOOSE_SHARE * slope))
        if split.any():
            new, C_new, parent = _refine(P, comp, labels[:, split])
            if C_new > C and refinement < max_refinements:
                carry.update(C_old=C, parent=parent)
                changed = np.bincount(parent, minlength=C) > 1  # old components cut into several
                active = changed[comp] if SATURATE else None  # the next test looks at the cut components only
                comp, C, Wc = new, C_new, Wc[parent]
                continue
            if C_new > C:
                break
            # no new pieces: the slopes are the reduced solve's error — solve it tightly, or accept them
            split[:] = False
        if loose:  # a test without a split on a loose reduced solve decides nothing: solve it tightly, test again
            tol_now = REDUCED_TOL
            continue
        t0 = time.perf_counter()
        first = J.size == 0 and refinement == 0
        violators, labels, unproven = _excluded(P, v, J, tol, certificates, limit=max(MIN_ADD, J.size),
                                                allowed=tries < MAX_TRIES, search=START_ITER if first else CERT_ITER)
        if violators.size == 0 and unproven:  # neither certified nor proven: a longer search decides them
            violators, labels, unproven = _excluded(P, v, J, tol, certificates, limit=max(MIN_ADD, J.size),
                                                    allowed=tries < MAX_TRIES, search=LONG_SEARCH * CERT_ITER)
        flagged = int(violators.size) + unproven
        history[-1].update(violators=int(violators.size), unproven=unproven, check_seconds=time.perf_counter() - t0)
        if violators.size == 0 or refinement == max_refinements:
            break
        tries[violators] += 1
        J = np.concatenate([J, violators])
        Wc = np.concatenate([Wc, np.zeros((C, violators.size))], axis=1)
        new, C_new, parent = _refine(P, comp, labels)
        carry.update(add=int(violators.size), C_old=C, parent=parent)
        comp, C, Wc, tol_now, active = new, C_new, Wc[parent], REDUCED_START, None
    Wfull = np.zeros((P.n, P.p))
    Wfull[:, J] = W
    converged = slope <= tol and flagged == 0 and tol_now <= REDUCED_TOL
    return CutPursuitResult(Wfull, gamma, v, P.objective(W, gamma, J), slope, converged, len(history) - 1, int(C), iters,
                            time.perf_counter() - start, J.tolist(), history)


def _pieces(P: _Problem, W0) -> tuple[np.ndarray, int]:
    """The start's partition: its connected pieces (rows equal across the edge), else the graph's connected components
    (a component must be connected for the split test's cuts to stay inside it)."""
    return _components(P, np.ones(P.src.size, dtype=bool) if W0 is None else np.all(W0[P.src] == W0[P.dst], axis=1))


def _components(P: _Problem, keep) -> tuple[np.ndarray, int]:
    """(component of each spot, count): the connected components of the spot graph's edges ``keep``."""
    G = sp.csr_matrix((np.ones(int(keep.sum())), (P.src[keep], P.dst[keep])), shape=(P.n, P.n))
    C, comp = connected_components(G, directed=False)
    return comp.astype(np.int64), int(C)


def _reduced(P: _Problem, comp, C, J, Wc0, gamma0, carry, tol, max_iter):
    """The problem with W constant per component, solved by the PDHG to ``tol``: (C, |J|) values, covariates, iterations
    and the state the next solve starts from (the components' edges, their edge dual, the step). ``carry``: the last
    solve's state with how the components and columns changed since (:func:`_carry`), or None."""
    if J.size == 0:  # nothing to solve: the covariates at their optimum
        gamma = None if P.Z is None else covariate_solve(torch.as_tensor(P.Z), torch.as_tensor(P.c).view(-1, 1),
                                                         torch.as_tensor(P.y).view(-1, 1))[0].numpy()
        return np.zeros((C, 0)), gamma, 0, {"pairs": np.zeros((0, 2), np.int64), "dual": None, "step": torch.full((1,), np.nan)}
    A = P.X[:, J] if P.Z is None else np.hstack([P.X[:, J], P.Z])
    d = A.shape[1]
    G, b = _grams(A, P.o, P.y, comp, C)
    ev, V = np.linalg.eigh(G)  # G_c = Σ_k ev_k V_k V_kᵀ: the pseudo-rows √ev_k V_kᵀ reproduce the component's Gram
    rc, rk = np.nonzero(ev > 1e-12 * np.maximum(ev.max(axis=1, keepdims=True), 1e-300))
    root = np.sqrt(ev[rc, rk])
    rows = V[rc, :, rk] * root[:, None]
    target = np.einsum("rd,rd->r", V[rc, :, rk], b[rc]) / root
    dt, q = torch.float64, d - J.size
    m = rows.shape[0]
    base = SquaredLoss(torch.as_tensor(rows[:, :J.size]), torch.as_tensor(target[:, None]), torch.full((m, 1), m / P.n, dtype=dt),
                       torch.as_tensor(rows[:, J.size:]) if q else None)  # weights m/n: c = 1/n per pseudo-row, as per spot
    size = np.bincount(comp, minlength=C).astype(float)
    fit = AggregateLoss.of(base, torch.as_tensor(rc), torch.as_tensor(size))
    pairs, merged, edge_map, sign = _contract(np.stack([P.src, P.dst], 1), P.w, comp, False)
    level = Level(comp, size, pairs, merged, edge_map, sign)
    one = lambda x: torch.tensor([x], dtype=dt)  # noqa: E731
    pen = SparseGroupLasso(one(P.alpha), one(P.beta), torch.as_tensor(P.factor[J]), P.n, torch.ones((C, 1), dtype=dt),
                           row_weight=torch.sqrt(torch.as_tensor(size)))
    u0 = torch.zeros((C, 1, J.size), dtype=dt) if Wc0 is None else torch.as_tensor(Wc0 * np.sqrt(size)[:, None]).reshape(C, 1, -1)
    g0 = None if not q else (torch.zeros((1, q), dtype=dt) if gamma0 is None else torch.as_tensor(gamma0).reshape(1, -1))
    U0, tau0 = (None, None) if carry is None else (_carry(pairs_new=pairs, **carry), carry["state"]["step"])
    res = primal_dual(fit, pen, GraphL1(one(P.lam)), coarse_operator(level, "cpu", dt), u0, g0, U0=U0, tau0=tau0, tol=tol,
                      max_iter=max_iter)
    Wc = res.W[:, 0, :].numpy() / np.sqrt(size)[:, None]
    state = {"pairs": pairs, "dual": res.dual, "step": torch.as_tensor(np.asarray(res.step, dtype=float))}
    return Wc, None if res.gamma is None else res.gamma[0].numpy(), int(res.iterations[0]), state


def _carry(state, parent, pairs_new, C_old, keep, add: int):
    """The last reduced solve's edge dual on the refined components' edges: an edge between two parts of different old
    components takes the old edge's dual (with the orientation's sign), one inside an old component starts at 0; kept
    columns stay, added ones start at 0."""
    old = state["pairs"]
    if state["dual"] is None or len(old) == 0 or len(pairs_new) == 0:
        return None
    dual = state["dual"][:, :, torch.as_tensor(np.flatnonzero(keep))]
    a, b = parent[pairs_new[:, 0]], parent[pairs_new[:, 1]]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys_old = old[:, 0] * C_old + old[:, 1]
    at = np.minimum(np.searchsorted(keys_old, lo * C_old + hi), len(keys_old) - 1)
    found = (a != b) & (keys_old[at] == lo * C_old + hi)
    sign = torch.as_tensor(np.where(found, np.where(a < b, 1.0, -1.0), 0.0)).view(-1, 1, 1)
    U = dual.index_select(0, torch.as_tensor(at)) * sign
    if add:
        U = torch.cat([U, torch.zeros((U.shape[0], 1, add), dtype=U.dtype)], dim=2)
    return U.contiguous()


def _grams(A, o, y, comp, C) -> tuple[np.ndarray, np.ndarray]:
    """Per component Σ o_i a_i a_iᵀ (C, d, d) and Σ o_i y_i a_i (C, d): a matrix product per component where they are
    few (the first, unrefined partition with every feature), else outer products of chunks of spots."""
    n, d = A.shape
    oA = o[:, None] * A
    S = sp.csr_matrix((np.ones(n), (comp, np.arange(n))), shape=(C, n))
    b = np.asarray(S @ (oA * y[:, None]))
    if C <= GRAM_LOOP:
        order = np.argsort(comp, kind="stable")
        bounds = np.searchsorted(comp[order], np.arange(C + 1))
        G = np.stack([A[order[lo:hi]].T @ oA[order[lo:hi]] for lo, hi in zip(bounds[:-1], bounds[1:])])
        return G, b
    G = np.zeros((C, d * d))
    step = max(1, GRAM_CHUNK // (d * d))
    for lo in range(0, n, step):
        part = slice(lo, lo + step)
        G += S[:, part] @ (A[part, :, None] * oA[part, None, :]).reshape(-1, d * d)
    return G.reshape(C, d, d), b


def _split(P: _Problem, W, v, J, equal: float, active=None, flows: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per kept column: the steepest direction h ∈ {−1, 0, 1}ⁿ (labels, (n, |J|)) and its relative slope (|J|,);
    entries within ``equal`` of the column's largest count as equal (a kink) or zero. ``active`` (n,) bool: only these
    spots may move (the others hold h = 0), so the cuts run on their part of the graph only. ``flows``: per feature the
    last cut's flow on every edge, updated in place — each cut augments from it (the unaries move little between tests)."""
    labels = np.zeros((P.n, J.size), dtype=np.int8)
    slopes = np.zeros(J.size)
    for k, j in enumerate(J):
        col = W[:, k]
        big = np.abs(col).max()
        g = v * P.X[:, j] + P.beta * np.sqrt(P.n) * P.factor[j] * col / np.sqrt((col * col).sum())
        nonzero = np.abs(col) > equal * big
        g += np.where(nonzero, P.alpha * P.factor[j] * np.sign(col), 0.0)
        diff = col[P.src] - col[P.dst]
        kink = np.abs(diff) <= equal * big
        jump = P.lam * P.w[~kink] * np.sign(diff[~kink])
        g += np.bincount(P.src[~kink], jump, P.n) - np.bincount(P.dst[~kink], jump, P.n)
        start = None if flows is None else flows.get(int(j))
        labels[:, k], value, size, flow = _steepest(P, g, P.alpha * P.factor[j], nonzero, kink, active, start)
        if flows is not None:
            flows[int(j)] = flow
        slopes[k] = max(-value, 0.0) / size
    return labels, slopes


def _steepest(P: _Problem, g, a, nonzero, kink, active=None, start=None):
    """min over h ∈ {−1, 0, 1}ⁿ of Σ_i f_i(h_i) + λ Σ_kink w_e |h_a − h_b| (f_i = g_i h, or g_i h + a|h| where W_ij = 0):
    (h, the minimum, the ℓ1 size Σ|g_i| + a that makes it relative, the flow on every edge). Two minimum cuts, {h ≥ 1}
    and {h ≥ 0}, on one network, the second augmenting the first's flow; ``start`` (m,): a flow on every edge to begin with."""
    up, down = np.where(nonzero, g, g + a), np.where(nonzero, g, g - a)  # f_i(1) and −f_i(−1)
    ks, kd, cap = P.src[kink], P.dst[kink], P.lam * P.w[kink]
    sel, cut_up, cut_down = np.flatnonzero(kink), up, down
    if active is not None:  # a kink edge to a spot held at h = 0 costs λ w_e |h_i|: into the moving spot's unaries
        inside, out_s, out_d = active[ks] & active[kd], active[ks] & ~active[kd], ~active[ks] & active[kd]
        extra = np.bincount(ks[out_s], cap[out_s], P.n) + np.bincount(kd[out_d], cap[out_d], P.n)
        cut_up, cut_down = np.where(active, up + extra, 0.0), np.where(active, down - extra, 0.0)
        sel = sel[inside]
    net = Network(P.n, P.src[sel], P.dst[sel], P.lam * P.w[sel])
    cut = net.cut(cut_up, flows=True, start=None if start is None else start[sel])
    in_up = in_zero = cut.source_side
    if not nonzero.all():
        cut = net.cut(cut_down, flows=True, start=cut.flow)
        in_zero = in_up | cut.source_side
    h = np.where(in_up, 1, np.where(in_zero, 0, -1)).astype(np.int8)
    if active is not None:
        h[~active] = 0
    flow = np.zeros(P.src.size) if start is None else start.copy()
    flow[sel] = cut.flow
    value = np.where(h == 1, up, 0.0).sum() - np.where(h == -1, down, 0.0).sum() + (cap * np.abs(h[ks] - h[kd])).sum()
    return h, float(value), max(float((np.abs(g) + a).sum()), np.finfo(float).tiny), flow


def _refine(P: _Problem, comp, labels) -> tuple[np.ndarray, int, np.ndarray]:
    """The partition cut by the labels: connected parts of equal (component, labels) — and each new part's parent."""
    key = comp.astype(np.int64)
    for k in range(labels.shape[1]):
        lab = labels[:, k].astype(np.int64)
        key = np.unique(key * (lab.max() - lab.min() + 1) + lab - lab.min(), return_inverse=True)[1]
    new, C = _components(P, key[P.src] == key[P.dst])
    parent = np.zeros(C, dtype=np.int64)
    parent[new] = comp
    return new, C, parent


def _excluded(P: _Problem, v, J, tol, z: torch.Tensor, *, limit: int, allowed: np.ndarray, search: int):
    """Columns outside J that provably lower the objective (the ``limit`` strongest, among ``allowed``), the direction
    each enters along (n, k), and how many columns are neither certified at zero nor proven (the search ran out).

    Unresolved also counts proven columns not ``allowed`` (twice returned at zero by the reduced solve).
    The working sets' edge certificate (:func:`~s3r.solver.certificates.check_excluded`, ``search`` FISTA iterations,
    from the certificates ``z`` (m, 1, p) kept from the last check) proves most columns zero. For the others its last
    residual gives the direction w = −S_α(g + λKᵀz), and a column is proven non-zero when F'(0; w) = ⟨g, w⟩ + α‖w‖₁ +
    β√n‖w‖₂ + λ‖Kw‖₁ < 0 there (the check's witness). A proven column enters along the steepest ternary direction of the ℓ1 and tv terms (two cuts: whole
    regions) when that lowers the objective with the group norm too, else along w cut into ``ENTRY_LEVELS`` levels a
    sign (the group norm favours directions of several levels, which no ternary cut has); the partition is cut along
    it, so the reduced problem can move the column off zero."""
    rest = np.setdiff1d(np.arange(P.p), J)
    none = np.zeros(0, dtype=np.int64), np.zeros((P.n, 0), dtype=np.int8)
    if rest.size == 0:
        return *none, 0
    dt, K = torch.float64, P.incidence()
    witness = np.zeros(rest.size, dtype=bool)
    flagged, score, _ = check_excluded(torch.as_tensor(P.X), torch.as_tensor(v).view(-1, 1), torch.ones((P.n, 1), dtype=dt), rest,
                                       torch.tensor([P.alpha], dtype=dt), torch.tensor([P.beta], dtype=dt), torch.as_tensor(P.factor),
                                       K, torch.tensor([P.lam], dtype=dt), certificates=z, max_iter=search, proven=witness)
    unproven = int((flagged & ~witness).sum())
    proven = []
    for k in np.flatnonzero(witness):
        j = rest[k]
        g, a = v * P.X[:, j], P.alpha * P.factor[j]
        zj = z[:, 0, j].double().numpy() * P.lam * P.w
        r = g + np.bincount(P.src, zj, P.n) - np.bincount(P.dst, zj, P.n)
        w = np.clip(r, -a, a) - r
        if w.any():
            proven.append((-score[k], j, w))
        else:
            unproven += 1
    unproven += sum(1 for c in proven if not allowed[c[1]])  # proven, but twice returned at zero: left unresolved
    proven = [c for c in sorted(proven, key=lambda c: c[0]) if allowed[c[1]]][:limit]
    if not proven:
        return *none, unproven
    zero, every = np.zeros(P.n, dtype=bool), np.ones(P.src.size, dtype=bool)
    dirs = []
    for _, j, w in proven:
        h, value, _, _ = _steepest(P, v * P.X[:, j], P.alpha * P.factor[j], zero, every)
        if value + P.beta * np.sqrt(P.n) * P.factor[j] * np.sqrt(np.count_nonzero(h)) >= 0:
            h = np.rint(ENTRY_LEVELS * w / np.abs(w).max()).astype(np.int8)
        dirs.append(h)
    return np.array([c[1] for c in proven], dtype=np.int64), np.stack(dirs, 1), unproven
