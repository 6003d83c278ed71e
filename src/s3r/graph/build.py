"""Building a spot graph from coordinates: kNN, Delaunay, radius and minimum spanning tree."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import Delaunay, QhullError, cKDTree

from s3r.errors import S3RInputError
from s3r.graph.coords import _check_k, _check_positive_length, validate_coords
from s3r.graph.lattice import ARRAY_INDICES, detect_lattice, visium_array_indices
from s3r.graph.spatial_graph import SpatialGraph, _canonical_edges

GRAPH_METHODS = ("knn", "delaunay", "radius", "mst")

# Tree distances may differ from numpy's in the last bits; within this relative gap the k-th and (k+1)-th
# neighbours are re-ranked with exact numpy distances so that ties always go to the smaller index.
_TIE_TOLERANCE = 1e-9
# on a lattice, a piece of tissue under this share of the spots beyond a gap of missing spots is joined to the rest by its
# kNN edges: on its own, 2–10 spots fit their own regression (DLPFC 151675, ELOVL4: MOBP +1.0 on a three-spot fragment
# against −0.02 over the section); a larger piece (a second section on the slide) smooths within itself
FRAGMENT_SHARE = 0.01


def _exact_distances(coords: np.ndarray, origin: int, candidates: np.ndarray) -> np.ndarray:
    """The same float expression a brute-force distance matrix would use, so ties rank identically."""
    difference = coords[candidates] - coords[origin]
    return np.sqrt((difference**2).sum(axis=1))


def _query(coords: np.ndarray, k: int) -> tuple[cKDTree, np.ndarray, np.ndarray]:
    """The KD-tree and each spot's k + 1 nearest others with itself first (distances, indices): what kNN and the
    lattice test both read, queried once."""
    tree = cKDTree(coords)
    distances, indices = tree.query(coords, k=min(k + 2, coords.shape[0]))
    return tree, distances, indices


def _nearest_neighbours(coords: np.ndarray, k: int, query=None) -> np.ndarray:
    """(n, k) int64: each spot's k nearest other spots, ties to the smaller index (a stable argsort).

    The KD-tree settles almost every row; only rows whose k-th and (k+1)-th distances are (near) equal
    are re-ranked exactly, which matters on lattice-like layouts such as Visium where ties are common.
    ``query``: :func:`_query`'s result for these coordinates and k, when the caller has it.
    """
    n = coords.shape[0]
    tree, distances, indices = _query(coords, k) if query is None else query
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


def knn_graph(coords, k: int = 7, *, whole_shells: bool = True) -> SpatialGraph:
    """Symmetrised kNN: an edge when either spot is among the other's k nearest.

    The one-directional relation the reference used drops edges; the union is symmetric. On a lattice (Visium,
    Visium HD bins) ``whole_shells`` joins whole distance shells instead, at most k neighbours each
    (:mod:`s3r.graph.lattice`: kNN would split a shell by sub-pixel skew and smooth more along some axes).
    """
    k = _check_k(k)
    xy = validate_coords(coords, min_spots=k + 1)
    query = _query(xy, k)
    lattice = detect_lattice(xy, k, distances=query[1][:, 1:]) if whole_shells else None
    radius = lattice.radius(k) if lattice is not None else None
    if radius is not None:
        return SpatialGraph(xy.shape[0], _shell_edges(xy, radius, k, query), method="knn",
                            lattice=f"{lattice.kind}, {lattice.neighbours(k)} neighbours")
    neighbours = _nearest_neighbours(xy, k, query)
    sources = np.repeat(np.arange(xy.shape[0], dtype=np.int64), k)
    return SpatialGraph(xy.shape[0], _canonical_edges(sources, neighbours.ravel()), method="knn")


def _shell_edges(xy: np.ndarray, radius: float, k: int, query) -> np.ndarray:
    """Every pair within ``radius``; the spots of a fragment (a component under ``FRAGMENT_SHARE`` of the spots, a
    stray spot included) keep their kNN edges, so it is joined to the tissue as kNN joins it."""
    n = xy.shape[0]
    pairs = query[0].query_pairs(radius, output_type="ndarray")
    edges = _canonical_edges(pairs[:, 0], pairs[:, 1])
    adjacency = sp.coo_matrix((np.ones(edges.shape[0]), (edges[:, 0], edges[:, 1])), shape=(n, n))
    labels = connected_components(adjacency, directed=False)[1]
    fragment = np.bincount(labels)[labels] < max(FRAGMENT_SHARE * n, 2)
    if not fragment.any():
        return edges
    knn = _canonical_edges(np.repeat(np.arange(n, dtype=np.int64), k), _nearest_neighbours(xy, k, query).ravel())
    knn = knn[fragment[knn[:, 0]] | fragment[knn[:, 1]]]
    return _canonical_edges(np.concatenate((edges[:, 0], knn[:, 0])), np.concatenate((edges[:, 1], knn[:, 1])))


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
    if visium_array_indices(validate_coords(coords)):
        raise S3RInputError(ARRAY_INDICES)
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
    return SpatialGraph(graph.n_nodes, _drop_long_edges(xy, graph.edges, max_edge_length), method=graph.method, lattice=graph.lattice)
