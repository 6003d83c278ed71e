"""w-step: edge weights by linear programming, with feasibility checked and explained first.

    min_w Σ_e c_e w_e   s.t.  Σ_{e ∋ v} w_e = 1 for every spot v,  w_min ≤ w_e ≤ w_max       ("equal")
    min_w Σ_e c_e w_e   s.t.  Σ_{e ∋ v} w_e ≥ b_v = min(1, deg_v·w_max),  w_min ≤ w_e ≤ w_max  ("at_least")

c_e is edge e's total jump Σ_d |(A X)_ed|, so weight flows away from edges that cross region boundaries.
The earlier implementation kept its old weights without a word when this LP was infeasible, which happens
whenever a spot has deg·w_min > 1 or deg·w_max < 1 (MST leaves), or, on a tree, when a spot has two leaf
neighbours (each leaf edge must carry weight 1). Those cases are found here by cheap bound propagation and
reported by spot, with the option to change; HiGHS solves the LP.

The "at_least" form keeps what the normalisation is for (no spot can shed all its weight, so w = 0 is not
a solution) but is feasible on every graph: w ≡ w_max satisfies it, a leaf's one edge simply takes
min(1, w_max), and on a tree the weights still move (a chain spot keeps weight on its cheaper edge). With
non-negative costs the optimum is tight at most spots (a few carry up to 2), so λ keeps roughly the
scale it has with "equal".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from s3r.errors import S3RInputError

_NAMED = 5
_TOL = 1e-12


@dataclass
class WeightFeasibility:
    feasible: bool
    min_degree: int
    max_degree: int
    w_min: float
    w_max: float
    w_min_limit: float  # the largest w_min every spot allows
    w_max_limit: float  # the smallest w_max every spot allows

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _name_nodes(nodes: np.ndarray, node_names: Sequence | None) -> str:
    labels = [str(node_names[i]) if node_names is not None else f"spot {int(i)}" for i in nodes[:_NAMED]]
    more = f" and {len(nodes) - _NAMED} more" if len(nodes) > _NAMED else ""
    return ", ".join(labels) + more


def check_weight_bounds(
    edges: np.ndarray,
    n_nodes: int,
    w_min: float,
    w_max: float,
    *,
    node_names: Sequence | None = None,
    graph_method: str = "graph",
) -> WeightFeasibility:
    """Raise S3RInputError naming the spots that make the LP infeasible; otherwise describe the margins."""
    if not (np.isfinite(w_min) and np.isfinite(w_max)) or w_min < 0 or w_max < w_min:
        raise S3RInputError(f"edge-weight bounds must satisfy 0 ≤ w_min ≤ w_max (got w_min={w_min}, w_max={w_max}); fix --w-min/--w-max")
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    degrees = np.bincount(edges.ravel(), minlength=n_nodes)
    fixed_hint = "or keep the edge weights fixed (--fixed-weights)"

    isolated = np.flatnonzero(degrees == 0)
    if isolated.size:
        raise S3RInputError(
            f"edge-weight LP infeasible: {isolated.size} spot(s) without edges in the {graph_method} graph "
            f"({_name_nodes(isolated, node_names)}) cannot have weights summing to 1; drop them, use a graph "
            f"that connects them (e.g. a larger --max-edge-length), {fixed_hint}"
        )
    too_many = np.flatnonzero(degrees * w_min > 1 + _TOL)
    if too_many.size:
        worst = int(degrees[too_many].max())
        raise S3RInputError(
            f"edge-weight LP infeasible: {too_many.size} spot(s) have degree·w_min > 1 "
            f"({_name_nodes(too_many, node_names)}; degree up to {worst}, w_min={w_min:g}); "
            f"lower --w-min to at most {1.0 / worst:.4g}, prune long edges (--max-edge-length), {fixed_hint}"
        )
    too_few = np.flatnonzero(degrees * w_max < 1 - _TOL)
    if too_few.size:
        least = int(degrees[too_few].min())
        raise S3RInputError(
            f"edge-weight LP infeasible: {too_few.size} spot(s) have degree·w_max < 1 "
            f"({_name_nodes(too_few, node_names)}; degree down to {least}, w_max={w_max:g}); "
            f"raise --w-max to at least {1.0 / least:.4g}, use --graph delaunay instead of mst, {fixed_hint}"
        )
    _check_propagated_bounds(edges, degrees, n_nodes, w_min, w_max, node_names, graph_method, fixed_hint)
    return WeightFeasibility(
        True, int(degrees.min()), int(degrees.max()), float(w_min), float(w_max),
        float(1.0 / degrees.max()), float(1.0 / degrees.min()),
    )


def _check_propagated_bounds(edges, degrees, n_nodes, w_min, w_max, node_names, graph_method, fixed_hint) -> None:
    """Tighten each edge's bounds from its endpoints' sum constraints; a spot whose tightened lower bounds
    exceed 1 (two leaf neighbours on a tree, say) makes the LP infeasible whatever the costs."""
    lower = np.full(edges.shape[0], float(w_min))
    upper = np.full(edges.shape[0], float(w_max))
    for _ in range(3):
        for side in (0, 1):
            node = edges[:, side]
            lower_sum = np.bincount(edges.ravel(), weights=np.repeat(lower, 2), minlength=n_nodes)
            upper_sum = np.bincount(edges.ravel(), weights=np.repeat(upper, 2), minlength=n_nodes)
            lower = np.maximum(lower, 1.0 - (upper_sum[node] - upper))
            upper = np.minimum(upper, 1.0 - (lower_sum[node] - lower))
    lower_sum = np.bincount(edges.ravel(), weights=np.repeat(lower, 2), minlength=n_nodes)
    upper_sum = np.bincount(edges.ravel(), weights=np.repeat(upper, 2), minlength=n_nodes)
    crossed = edges[lower > upper + 1e-9].ravel()
    stuck_nodes = (lower_sum > 1 + 1e-9) | (upper_sum < 1 - 1e-9)
    stuck_nodes[crossed] = True
    stuck = np.flatnonzero(stuck_nodes)
    if stuck.size:
        leaves = degrees == 1
        leaf_neighbours = np.bincount(edges[leaves[edges[:, 1]], 0], minlength=n_nodes) + np.bincount(
            edges[leaves[edges[:, 0]], 1], minlength=n_nodes
        )
        reason = (
            "are joined to two or more leaf spots (a leaf's only edge must carry weight 1)"
            if np.any(leaf_neighbours[stuck] >= 2)
            else "cannot reach a weight sum of 1 given their neighbours' constraints"
        )
        raise S3RInputError(
            f"edge-weight LP infeasible on the {graph_method} graph: {stuck.size} spot(s) "
            f"({_name_nodes(stuck, node_names)}) {reason}; use --graph delaunay, set --w-min 0, {fixed_hint}"
        )


def uniform_weights(edges: np.ndarray, n_nodes: int) -> np.ndarray:
    """Fixed weights 2/(deg_i + deg_j): each spot's weights sum to about 1, as the LP's do, so λ keeps its scale."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    degrees = np.bincount(edges.ravel(), minlength=n_nodes).astype(np.float64)
    return 2.0 / (degrees[edges[:, 0]] + degrees[edges[:, 1]])


WEIGHT_CONSTRAINTS = ("at_least", "equal")


def node_weight_floor(node_edge: sp.csr_matrix, w_max: float) -> np.ndarray:
    """b_v = min(1, deg_v·w_max): the weight every spot keeps under the "at_least" constraint."""
    degrees = np.diff(sp.csr_matrix(node_edge).indptr).astype(np.float64)
    return np.minimum(1.0, degrees * float(w_max))


def solve_w_step(
    edge_costs: np.ndarray,
    node_edge: sp.csr_matrix,
    w_min: float,
    w_max: float,
    constraint: str = "equal",
) -> np.ndarray:
    """HiGHS on the degree-constrained LP; for "equal" run check_weight_bounds first so failures are loud."""
    if constraint not in WEIGHT_CONSTRAINTS:
        raise S3RInputError(f"unknown weight constraint {constraint!r}; choose one of {', '.join(WEIGHT_CONSTRAINTS)}")
    n_nodes = node_edge.shape[0]
    if constraint == "equal":
        rows = {"A_eq": node_edge, "b_eq": np.ones(n_nodes)}
    else:
        rows = {"A_ub": -node_edge, "b_ub": -node_weight_floor(node_edge, w_max)}
    result = linprog(
        np.asarray(edge_costs, dtype=np.float64),
        **rows,
        bounds=(w_min, w_max),
        method="highs",
        options={"presolve": False},  # presolve finds little to remove here and costs ~30% of the solve
    )
    if result.status == 2:
        raise S3RInputError(
            "edge-weight LP infeasible: no weighting gives every spot a weight sum of 1 within "
            f"[w_min={w_min:g}, w_max={w_max:g}] on this graph; widen the bounds, use --graph delaunay, "
            "or keep the edge weights fixed (--fixed-weights)"
        )
    if result.status != 0 or result.x is None:
        raise RuntimeError(f"edge-weight LP failed (HiGHS status {result.status}: {result.message})")
    return np.clip(result.x, w_min, w_max)
