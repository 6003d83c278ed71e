"""Spatial graphs over spots, built sparse from coordinates.

Everything here is O(n · neighbours): a dense n × n matrix of 23k cells already costs 4 GB, which is the
reference implementation's scaling wall. Edge lists are kept canonical (i < j, unique,
lexicographically sorted, int64) so that the same coordinates always give bit-identical operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import Delaunay, QhullError, cKDTree

from s3r.errors import S3RInputError

__all__ = [
    "GRAPH_METHODS",
    "SpatialGraph",
    "build_graph",
    "delaunay_graph",
    "knn_graph",
    "mst_graph",
    "neighbour_mean_operator",
    "radius_graph",
    "reference_knn_operator",
    "validate_coords",
]

GRAPH_METHODS = ("knn", "delaunay", "radius", "mst")

# Tree distances may differ from numpy's in the last bits; within this relative gap the k-th and (k+1)-th
# neighbours are re-ranked with exact numpy distances so that ties always go to the smaller index.
_TIE_TOLERANCE = 1e-9
_MAX_ROWS_NAMED = 5


# --------------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------------


def _row_names(rows, labels) -> list[str]:
    """Rows are 0-based; a DataFrame's index label is added because that is what users recognise."""
    names = []
    for row in rows:
        name = f"row {int(row)}"
        if labels is not None:
            name += f" (index label {labels[int(row)]!r})"
        names.append(name)
    return names


def _list_rows(rows, labels) -> str:
    rows = list(rows)
    named = _row_names(rows[:_MAX_ROWS_NAMED], labels)
    text = ", ".join(named)
    if len(rows) > _MAX_ROWS_NAMED:
        text += f" and {len(rows) - _MAX_ROWS_NAMED} more"
    return text


def _first_duplicate_pair(xy: np.ndarray) -> tuple[int, int, int] | None:
    """(earlier row, later row, number of redundant rows) for the duplicate whose later row comes first."""
    order = np.lexsort((np.arange(len(xy)), xy[:, 1], xy[:, 0]))
    sorted_xy = xy[order]
    same_as_previous = np.all(sorted_xy[1:] == sorted_xy[:-1], axis=1)
    if not same_as_previous.any():
        return None
    # Within a run of equal coordinates the order is by row, so the run's first row is the one to keep.
    run_start = np.zeros(len(xy), dtype=bool)
    run_start[0] = True
    run_start[1:] = ~same_as_previous
    first_of_run = order[np.maximum.accumulate(np.where(run_start, np.arange(len(xy)), 0))]
    redundant = np.flatnonzero(~run_start)
    later_rows = order[redundant]
    pick = np.argmin(later_rows)
    return int(first_of_run[redundant[pick]]), int(later_rows[pick]), int(len(redundant))


def validate_coords(coords, *, source: str = "coordinates", min_spots: int = 1) -> np.ndarray:
    """Return coordinates as a fresh (n, 2) float64 array, or raise one actionable S3RInputError line.

    Graph builders fail in obscure ways on NaN (KD-tree), duplicates (zero-length edges, Qhull drops points)
    or too few spots, so every such problem is caught here and reported by row.
    """
    labels = None
    if hasattr(coords, "columns") and hasattr(coords, "index"):  # a pandas DataFrame
        columns = list(coords.columns)
        if len(columns) != 2:
            raise S3RInputError(
                f"{source}: expected 2 coordinate columns (x, y) but got {len(columns)}"
                f" ({', '.join(map(str, columns))}); select the two spatial columns"
            )
        for position, dtype in enumerate(coords.dtypes):
            if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
                raise S3RInputError(
                    f"{source}: column {columns[position]!r} has dtype {dtype}, not numbers;"
                    " convert the coordinate columns to numeric"
                )
        labels = list(coords.index)
        values = coords.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:
        try:
            values = np.array(coords, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as exc:
            raise S3RInputError(
                f"{source}: coordinates must be numeric, an (n, 2) array of x, y ({exc})"
            ) from None
    if values.ndim != 2 or values.shape[1] != 2:
        raise S3RInputError(
            f"{source}: expected an (n, 2) array of x, y coordinates but got shape {values.shape};"
            " pass one row per spot with two columns"
        )
    n = values.shape[0]
    if n < max(int(min_spots), 1):
        raise S3RInputError(
            f"{source}: {n} spots but at least {max(int(min_spots), 1)} are needed; add spots or lower k"
        )
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad_rows.size:
        verb = "has a" if bad_rows.size == 1 else "have"
        noun = "coordinate" if bad_rows.size == 1 else "coordinates"
        raise S3RInputError(
            f"{source}: {_list_rows(bad_rows, labels)} {verb} non-finite (NaN or inf) {noun};"
            " drop those spots or fix their coordinates"
        )
    duplicate = _first_duplicate_pair(values)
    if duplicate is not None:
        kept, repeated, count = duplicate
        first, second = _row_names([kept, repeated], labels)
        more = f" ({count} duplicated rows in all)" if count > 1 else ""
        x, y = values[repeated]
        raise S3RInputError(
            f"{source}: {first} and {second} have identical coordinates ({x:g}, {y:g}){more};"
            " merge the duplicated spots or jitter them apart"
        )
    values[values == 0] = 0.0  # -0.0 and 0.0 are one location; keep downstream arithmetic identical
    return values


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise S3RInputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_positive_length(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise S3RInputError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise S3RInputError(f"{name} must be a positive finite number, got {value!r}")
    return number


# --------------------------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------------------------


def _canonical_edges(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Unordered pairs -> unique (min, max) rows in lexicographic order; self pairs dropped."""
    i = np.asarray(i, dtype=np.int64).ravel()
    j = np.asarray(j, dtype=np.int64).ravel()
    low, high = np.minimum(i, j), np.maximum(i, j)
    keep = low != high
    pairs = np.column_stack((low[keep], high[keep]))
    if pairs.shape[0] == 0:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0).astype(np.int64, copy=False)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class SpatialGraph:
    """An undirected spot graph; every smoothness operator in s3r is derived from its edge list.

    Arrays are read-only so a graph can be shared between fits (and threads) without defensive copies.
    Equality is identity: comparing arrays element-wise is the caller's decision.
    """

    n_nodes: int
    edges: np.ndarray
    weights: np.ndarray | None = None
    method: str = "custom"

    def __post_init__(self):
        n = self.n_nodes
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
            raise S3RInputError(f"n_nodes must be a non-negative integer, got {n!r}")
        given = np.asarray(self.edges)
        if given.size and not np.issubdtype(given.dtype, np.integer):
            if not np.issubdtype(given.dtype, np.number) or np.any(given != np.round(given)):
                raise S3RInputError("edges must be integer node indices")
        edges = np.array(given, dtype=np.int64, copy=True)
        if edges.size == 0:
            edges = edges.reshape(0, 2)
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise S3RInputError(f"edges must be an (m, 2) array of node pairs, got shape {edges.shape}")
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise S3RInputError(f"edges refer to nodes outside 0..{n - 1}; check the edge list against n_nodes")
        if np.any(edges[:, 0] == edges[:, 1]):
            row = int(np.flatnonzero(edges[:, 0] == edges[:, 1])[0])
            raise S3RInputError(f"edge row {row} is a self loop ({edges[row, 0]}, {edges[row, 1]}); remove it")
        if self.weights is None:
            weights = np.ones(edges.shape[0], dtype=np.float64)
        else:
            weights = _checked_weights(self.weights, edges.shape[0])
        # Canonical order keeps operators identical however the edge list was produced.
        edges = np.sort(edges, axis=1)
        order = np.lexsort((edges[:, 1], edges[:, 0]))
        edges, weights = edges[order], weights[order]
        repeated = np.flatnonzero(np.all(edges[1:] == edges[:-1], axis=1))
        if repeated.size:
            a, b = edges[repeated[0]]
            raise S3RInputError(f"edge ({a}, {b}) is listed more than once; give each edge once")
        object.__setattr__(self, "n_nodes", int(n))
        object.__setattr__(self, "edges", _frozen(edges))
        object.__setattr__(self, "weights", _frozen(weights))
        object.__setattr__(self, "method", str(self.method))

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    def incidence(self, weighted: bool = False) -> sp.csr_matrix:
        """Edge-incidence A (m × n): ‖A W‖₁ is graph total variation, AᵀA the Laplacian."""
        m = self.n_edges
        data = np.tile(np.array([1.0, -1.0]), m)
        if weighted:
            data *= np.repeat(self.weights, 2)
        indptr = np.arange(0, 2 * m + 1, 2, dtype=np.int64)
        return sp.csr_matrix((data, self.edges.ravel().copy(), indptr), shape=(m, self.n_nodes))

    def adjacency(self) -> sp.csr_matrix:
        """Symmetric weighted adjacency; zero-weight edges are not stored."""
        i, j = self.edges[:, 0], self.edges[:, 1]
        rows = np.concatenate((i, j))
        cols = np.concatenate((j, i))
        data = np.concatenate((self.weights, self.weights))
        adjacency = sp.csr_matrix((data, (rows, cols)), shape=(self.n_nodes, self.n_nodes))
        adjacency.eliminate_zeros()
        adjacency.sort_indices()
        return adjacency

    def laplacian(self) -> sp.csr_matrix:
        """L = Aᵀ diag(w) A = D_w − Adj, built without forming the product."""
        adjacency = self.adjacency()
        weighted_degree = np.asarray(adjacency.sum(axis=1)).ravel()
        laplacian = (sp.diags(weighted_degree, format="csr") - adjacency).tocsr()
        laplacian.eliminate_zeros()
        laplacian.sort_indices()
        return laplacian

    def degrees(self) -> np.ndarray:
        """Number of incident edges per node (weights ignored), int64."""
        return np.bincount(self.edges.ravel(), minlength=self.n_nodes).astype(np.int64)

    def components(self) -> tuple[int, np.ndarray]:
        """Connected components of the edge set; a fit is only smooth within a component, so report them."""
        structure = sp.csr_matrix(
            (np.ones(self.n_edges), (self.edges[:, 0], self.edges[:, 1])), shape=(self.n_nodes, self.n_nodes)
        )
        count, labels = connected_components(structure, directed=False)
        return int(count), labels.astype(np.int64)

    def with_weights(self, weights) -> "SpatialGraph":
        """Same edges, new weights (one per edge, in the canonical edge order)."""
        return SpatialGraph(self.n_nodes, self.edges, _checked_weights(weights, self.n_edges), self.method)

    def __repr__(self) -> str:
        return f"SpatialGraph(method={self.method!r}, n_nodes={self.n_nodes}, n_edges={self.n_edges})"


def _checked_weights(weights, n_edges: int) -> np.ndarray:
    try:
        values = np.array(weights, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        raise S3RInputError("edge weights must be numeric, one per edge") from None
    if values.ndim != 1 or values.shape[0] != n_edges:
        raise S3RInputError(
            f"expected {n_edges} edge weights (one per edge) but got shape {values.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise S3RInputError(
            f"edge weight at position {int(bad[0])} is {values[bad[0]]!r}; weights must be finite and >= 0"
        )
    return values


# --------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------


def _exact_distances(coords: np.ndarray, origin: int, candidates: np.ndarray) -> np.ndarray:
    """The same float expression a brute-force distance matrix would use, so ties rank identically."""
    difference = coords[candidates] - coords[origin]
    return np.sqrt((difference**2).sum(axis=1))


def _nearest_neighbours(coords: np.ndarray, k: int) -> np.ndarray:
    """(n, k) int64: each spot's k nearest other spots, ties to the smaller index (a stable argsort).

    The KD-tree settles almost every row; only rows whose k-th and (k+1)-th distances are (near) equal
    are re-ranked exactly, which matters on lattice-like layouts such as Visium where ties are common.
    """
    n = coords.shape[0]
    tree = cKDTree(coords)
    distances, indices = tree.query(coords, k=min(k + 2, n))
    if distances.shape[1] < k + 2:  # n == k + 1: every other spot is a neighbour
        distances = np.pad(distances, ((0, 0), (0, k + 2 - distances.shape[1])), constant_values=np.inf)
        indices = np.pad(indices, ((0, 0), (0, k + 2 - indices.shape[1])), constant_values=n)
    rows = np.arange(n)
    if not np.array_equal(indices[:, 0], rows):  # cannot happen for validated (duplicate-free) input
        raise S3RInputError("coordinates contain duplicated spots; merge them or jitter them apart")
    neighbours = indices[:, 1 : k + 1].astype(np.int64)
    kth = distances[:, k]
    next_distance = distances[:, k + 1]
    ambiguous = np.flatnonzero(next_distance <= kth * (1.0 + _TIE_TOLERANCE))
    if ambiguous.size:
        candidate_lists = tree.query_ball_point(coords[ambiguous], r=kth[ambiguous] * (1.0 + _TIE_TOLERANCE))
        for row, candidates in zip(ambiguous, candidate_lists):
            candidates = np.asarray(candidates, dtype=np.int64)
            candidates = candidates[candidates != row]
            exact = _exact_distances(coords, row, candidates)
            ranked = candidates[np.lexsort((candidates, exact))]
            neighbours[row] = ranked[:k]
    return neighbours


def knn_graph(coords, k: int = 7) -> SpatialGraph:
    """Symmetrised kNN: an edge when either spot is among the other's k nearest.

    The one-directional relation the reference used drops edges; the union is symmetric.
    """
    k = _check_k(k)
    xy = validate_coords(coords, min_spots=k + 1)
    neighbours = _nearest_neighbours(xy, k)
    sources = np.repeat(np.arange(xy.shape[0], dtype=np.int64), k)
    return SpatialGraph(xy.shape[0], _canonical_edges(sources, neighbours.ravel()), method="knn")


def _check_not_collinear(xy: np.ndarray) -> None:
    n = xy.shape[0]
    if n < 3:
        raise S3RInputError(
            f"coordinates: Delaunay needs at least 3 spots but got {n} (rows 0..{n - 1});"
            " use method='knn' or 'radius'"
        )
    centred = xy - xy.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    if singular[-1] <= 1e-12 * singular[0]:
        raise S3RInputError(
            f"coordinates: all {n} spots (rows 0..{n - 1}) lie on one line, so there is no Delaunay"
            " triangulation; use method='knn' or 'radius'"
        )


def _delaunay_edges(xy: np.ndarray) -> np.ndarray:
    _check_not_collinear(xy)
    try:
        triangulation = Delaunay(xy)
    except QhullError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "Qhull failed"
        raise S3RInputError(
            f"coordinates: Delaunay triangulation failed on nearly degenerate input ({first_line});"
            " use method='knn' or 'radius'"
        ) from None
    simplices = triangulation.simplices.astype(np.int64)
    i = np.concatenate((simplices[:, 0], simplices[:, 1], simplices[:, 0]))
    j = np.concatenate((simplices[:, 1], simplices[:, 2], simplices[:, 2]))
    # Qhull leaves out points it considers coincident at its precision; tie each to its nearest vertex
    # so no spot silently becomes isolated.
    coplanar = np.asarray(triangulation.coplanar, dtype=np.int64).reshape(-1, 3)
    if coplanar.size:
        i = np.concatenate((i, coplanar[:, 0]))
        j = np.concatenate((j, coplanar[:, 2]))
    return _canonical_edges(i, j)


def _edge_lengths(xy: np.ndarray, edges: np.ndarray) -> np.ndarray:
    difference = xy[edges[:, 0]] - xy[edges[:, 1]]
    return np.sqrt((difference**2).sum(axis=1))


def _drop_long_edges(xy: np.ndarray, edges: np.ndarray, max_edge_length) -> np.ndarray:
    if max_edge_length is None:
        return edges
    limit = _check_positive_length(max_edge_length, "max_edge_length")
    return edges[_edge_lengths(xy, edges) <= limit]


def delaunay_graph(coords, max_edge_length: float | None = None) -> SpatialGraph:
    """Delaunay triangulation edges; max_edge_length stops the hull from bridging holes and tissue gaps."""
    xy = validate_coords(coords, min_spots=1)
    edges = _drop_long_edges(xy, _delaunay_edges(xy), max_edge_length)
    return SpatialGraph(xy.shape[0], edges, method="delaunay")


def radius_graph(coords, radius: float) -> SpatialGraph:
    """Every pair within `radius` (inclusive): density-adaptive degree, natural for regular Visium grids."""
    r = _check_positive_length(radius, "radius")
    xy = validate_coords(coords, min_spots=1)
    pairs = cKDTree(xy).query_pairs(r, output_type="ndarray")
    return SpatialGraph(xy.shape[0], _canonical_edges(pairs[:, 0], pairs[:, 1]), method="radius")


def mst_graph(coords) -> SpatialGraph:
    """Euclidean minimum spanning tree (it lies inside the Delaunay graph): the sparsest connected graph."""
    xy = validate_coords(coords, min_spots=1)
    n = xy.shape[0]
    edges = _delaunay_edges(xy)
    lengths = _edge_lengths(xy, edges)  # > 0: duplicates were rejected, so no edge vanishes as a zero
    candidate = sp.csr_matrix((lengths, (edges[:, 0], edges[:, 1])), shape=(n, n))
    tree = minimum_spanning_tree(candidate).tocoo()
    return SpatialGraph(n, _canonical_edges(tree.row, tree.col), method="mst")


def build_graph(
    coords,
    method: str = "knn",
    *,
    k: int = 7,
    radius: float | None = None,
    max_edge_length: float | None = None,
) -> SpatialGraph:
    """One entry point for the CLI and estimator; max_edge_length prunes long edges for every method."""
    if method == "knn":
        graph = knn_graph(coords, k=k)
    elif method == "delaunay":
        return delaunay_graph(coords, max_edge_length=max_edge_length)
    elif method == "radius":
        if radius is None:
            raise S3RInputError("graph method 'radius' needs a radius (e.g. --radius 150 in coordinate units)")
        graph = radius_graph(coords, radius)
    elif method == "mst":
        graph = mst_graph(coords)
    else:
        raise S3RInputError(f"unknown graph method {method!r}; choose one of {', '.join(GRAPH_METHODS)}")
    if max_edge_length is None:
        return graph
    xy = validate_coords(coords)
    return SpatialGraph(graph.n_nodes, _drop_long_edges(xy, graph.edges, max_edge_length), method=graph.method)


# --------------------------------------------------------------------------------------------------------
# Smoothness operators
# --------------------------------------------------------------------------------------------------------


def reference_knn_operator(coords, k: int = 7) -> sp.csr_matrix:
    """The reference S3R "L mode" operator G = Eᵀ, reproduced exactly for --compat.

    E has row i = +1 at the k nearest neighbours of i, −1 at i, and its last row zeroed. The quirks (one-way
    kNN, the zeroed row, the transpose) are deliberate: they make objectives comparable with the reference.
    """
    k = _check_k(k)
    xy = validate_coords(coords, min_spots=k + 1)
    n = xy.shape[0]
    neighbours = _nearest_neighbours(xy, k)
    kept_rows = np.arange(n - 1, dtype=np.int64)  # E's last row is zeroed
    e_rows = np.concatenate((np.repeat(kept_rows, k), kept_rows))
    e_cols = np.concatenate((neighbours[:-1].ravel(), kept_rows))
    values = np.concatenate((np.ones((n - 1) * k), -np.ones(n - 1)))
    # G = Eᵀ: swap the roles of rows and columns.
    operator = sp.csr_matrix((values, (e_cols, e_rows)), shape=(n, n))
    operator.sort_indices()
    return operator


def neighbour_mean_operator(graph: SpatialGraph) -> sp.csr_matrix:
    """Row i = e_i − mean of i's neighbours: the principled graph_l1 operator (no zeroed row, symmetric kNN).

    The mean is weighted by edge weights (plain mean for the default unit weights); isolated spots give a
    zero row because they have nothing to be smooth against.
    """
    adjacency = graph.adjacency()
    weighted_degree = np.asarray(adjacency.sum(axis=1)).ravel()
    has_neighbours = weighted_degree > 0
    inverse = np.zeros_like(weighted_degree)
    inverse[has_neighbours] = 1.0 / weighted_degree[has_neighbours]
    operator = (sp.diags(has_neighbours.astype(np.float64), format="csr") - sp.diags(inverse) @ adjacency).tocsr()
    operator.eliminate_zeros()
    operator.sort_indices()
    return operator
