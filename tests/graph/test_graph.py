"""Spatial graphs: structure, agreement with brute force, exact reference operator, and input errors."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from s3r.errors import S3RInputError
from s3r.graph import (
    SpatialGraph,
    build_graph,
    delaunay_graph,
    knn_graph,
    mst_graph,
    neighbour_mean_operator,
    radius_graph,
    reference_knn_operator,
    validate_coords,
)

REPO = Path(__file__).resolve().parents[2]
GEOMETRY_DIRS = (REPO / "src" / "s3r" / "data" / "geometry", REPO.parent / "shared" / "data" / "geometry")


def load_real_geometry(file_name: str) -> np.ndarray:
    for folder in GEOMETRY_DIRS:
        path = folder / file_name
        if path.exists():
            table = pd.read_csv(path, index_col=0)
            return table.select_dtypes("number").iloc[:, -2:].to_numpy(dtype=float)
    pytest.skip(f"geometry {file_name} is neither bundled nor in ../shared")


@pytest.fixture(scope="module")
def dlpfc_coords():
    return load_real_geometry("dlpfc_151507_visium_coords.csv")


@pytest.fixture(scope="module")
def xenium_coords():
    return load_real_geometry("xenium_breast_region_cells_coords.csv")


# ---------------------------------------------------------------- brute-force references (small n only)


def pairwise(xy):
    difference = xy[:, None, :] - xy[None, :, :]
    return np.sqrt((difference**2).sum(axis=-1))


def brute_knn(xy, k):
    """k nearest other points per row, ties to the smaller index (stable argsort; self sorts first)."""
    order = np.argsort(pairwise(xy), axis=1, kind="stable")
    assert np.array_equal(order[:, 0], np.arange(len(xy)))
    return order[:, 1 : k + 1]


def edge_set(graph):
    return {tuple(edge) for edge in graph.edges.tolist()}


def brute_mst_length(xy):
    """Prim's algorithm on the complete graph."""
    distances = pairwise(xy)
    n = len(xy)
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best = distances[0].copy()
    total = 0.0
    for _ in range(n - 1):
        candidate = np.where(in_tree, np.inf, best)
        nxt = int(np.argmin(candidate))
        total += candidate[nxt]
        in_tree[nxt] = True
        best = np.minimum(best, distances[nxt])
    return total


def random_points(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 100, size=(n, 2))


def integer_grid(side):
    """Many exact distance ties: exercises the smaller-index tie rule."""
    gy, gx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return np.column_stack((gx.ravel(), gy.ravel())).astype(float)


def hex_grid(rows, cols):
    """Visium-like lattice: ties that differ only in the last bits of floating point."""
    points = [(c + 0.5 * (r % 2), r * np.sqrt(3) / 2) for r in range(rows) for c in range(cols)]
    return np.array(points)


def assert_structural_invariants(graph):
    n = graph.n_nodes
    edges = graph.edges
    assert edges.dtype == np.int64 and edges.shape == (graph.n_edges, 2)
    assert np.all(edges[:, 0] < edges[:, 1])
    assert np.unique(edges, axis=0).shape[0] == graph.n_edges
    assert np.array_equal(edges, edges[np.lexsort((edges[:, 1], edges[:, 0]))])
    adjacency = graph.adjacency()
    assert sp.isspmatrix_csr(adjacency) and adjacency.shape == (n, n)
    assert (adjacency != adjacency.T).nnz == 0
    assert np.all(adjacency.diagonal() == 0)
    laplacian = graph.laplacian()
    assert sp.isspmatrix_csr(laplacian)
    np.testing.assert_allclose(np.asarray(laplacian.sum(axis=1)).ravel(), 0.0, atol=1e-12)
    degree_matrix = sp.diags(np.asarray(adjacency.sum(axis=1)).ravel())
    difference = (laplacian - (degree_matrix - adjacency)).tocsr()
    assert difference.nnz == 0 or abs(difference).max() < 1e-12
    assert np.array_equal(graph.degrees(), np.bincount(edges.ravel(), minlength=n))
    incidence = graph.incidence()
    assert incidence.shape == (graph.n_edges, n)
    assert np.all(incidence.getnnz(axis=1) == 2)
    np.testing.assert_array_equal(np.asarray(incidence.sum(axis=1)).ravel(), 0.0)


# ---------------------------------------------------------------- validate_coords


def test_validate_coords_returns_float_copy():
    coords = np.array([[0, 0], [1, 2], [3, 1]], dtype=np.int32)
    result = validate_coords(coords)
    assert result.dtype == np.float64 and result.shape == (3, 2)
    result[0, 0] = 99
    assert coords[0, 0] == 0


def test_validate_coords_accepts_dataframe():
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 0.0]}, index=["a", "b", "c"])
    np.testing.assert_array_equal(validate_coords(frame), frame.to_numpy())


@pytest.mark.parametrize("bad_value, word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_non_finite_coordinate_names_row(bad_value, word):
    coords = random_points(10)
    coords[4, 1] = bad_value
    with pytest.raises(S3RInputError, match=r"row 4\b") as info:
        validate_coords(coords)
    assert word in str(info.value) and "\n" not in str(info.value)


def test_many_non_finite_rows_are_summarised():
    coords = random_points(20)
    coords[[2, 3, 5, 7, 11, 13, 17], 0] = np.nan
    with pytest.raises(S3RInputError, match=r"row 2, row 3, row 5, row 7, row 11 and 2 more"):
        validate_coords(coords)


def test_non_finite_in_dataframe_names_index_label():
    frame = pd.DataFrame({"x": [0.0, np.nan, 2.0], "y": [0.0, 1.0, 0.0]}, index=["AAAC-1", "GGTT-1", "CCAA-1"])
    with pytest.raises(S3RInputError, match=r"row 1 \(index label 'GGTT-1'\)"):
        validate_coords(frame, source="coords.csv")


def test_duplicate_coordinates_name_both_rows():
    coords = random_points(10)
    coords[7] = coords[3]
    with pytest.raises(S3RInputError, match=r"row 3 and row 7") as info:
        validate_coords(coords)
    message = str(info.value)
    assert "merge" in message and "jitter" in message and "\n" not in message


def test_duplicate_reports_first_repeated_row_and_count():
    coords = random_points(12)
    coords[9] = coords[0]
    coords[5] = coords[8]
    coords[11] = coords[8]
    with pytest.raises(S3RInputError, match=r"row 5 and row 8 .*3 duplicated rows"):
        validate_coords(coords)


def test_duplicate_in_dataframe_names_labels():
    frame = pd.DataFrame({"x": [0.0, 1.0, 0.0], "y": [5.0, 1.0, 5.0]}, index=["s1", "s2", "s3"])
    with pytest.raises(S3RInputError, match=r"row 0 \(index label 's1'\) and row 2 \(index label 's3'\)"):
        validate_coords(frame)


def test_negative_zero_is_a_duplicate_of_zero():
    with pytest.raises(S3RInputError, match="row 0 and row 1"):
        validate_coords(np.array([[0.0, 1.0], [-0.0, 1.0], [2.0, 2.0]]))


@pytest.mark.parametrize(
    "coords",
    [np.zeros(5), np.zeros((4, 3)), np.zeros((2, 2, 2)), np.zeros((3, 1))],
    ids=["1d", "three-columns", "3d", "one-column"],
)
def test_wrong_shape(coords):
    with pytest.raises(S3RInputError, match=r"\(n, 2\)"):
        validate_coords(coords)


def test_dataframe_with_extra_column_names_columns():
    frame = pd.DataFrame({"barcode": ["a", "b"], "row": [1, 2], "col": [3, 4]})
    with pytest.raises(S3RInputError, match=r"barcode, row, col"):
        validate_coords(frame)


def test_non_numeric_column():
    frame = pd.DataFrame({"x": ["1", "2"], "y": [3.0, 4.0]})
    with pytest.raises(S3RInputError, match=r"'x'.*numeric"):
        validate_coords(frame)


def test_too_few_spots_for_knn():
    with pytest.raises(S3RInputError, match=r"5 spots but at least 8"):
        knn_graph(random_points(5), k=7)
    with pytest.raises(S3RInputError, match=r"at least 8"):
        reference_knn_operator(random_points(7), k=7)
    assert knn_graph(random_points(8), k=7).n_edges == 8 * 7 // 2  # n = k + 1: complete graph


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "7"])
def test_bad_k(k):
    with pytest.raises(S3RInputError, match="k must be a positive integer"):
        knn_graph(random_points(20), k=k)


# ---------------------------------------------------------------- SpatialGraph


def test_spatial_graph_canonicalises_edges_and_weights():
    graph = SpatialGraph(4, np.array([[3, 1], [0, 2], [1, 0]]), np.array([3.0, 2.0, 1.0]), "custom")
    np.testing.assert_array_equal(graph.edges, [[0, 1], [0, 2], [1, 3]])
    np.testing.assert_array_equal(graph.weights, [1.0, 2.0, 3.0])
    assert graph.edges.dtype == np.int64 and graph.weights.dtype == np.float64
    assert graph.n_edges == 3


def test_spatial_graph_is_immutable():
    graph = SpatialGraph(3, [[0, 1], [1, 2]])
    with pytest.raises(AttributeError):
        graph.n_nodes = 5
    with pytest.raises(ValueError):
        graph.edges[0, 0] = 2
    with pytest.raises(ValueError):
        graph.weights[0] = 2.0


@pytest.mark.parametrize(
    "edges, match",
    [
        ([[0, 0]], "self loop"),
        ([[0, 1], [1, 0]], "more than once"),
        ([[0, 5]], "outside"),
        ([[0, 1, 2]], r"\(m, 2\)"),
        ([[0, 1.5]], "integer"),
    ],
)
def test_spatial_graph_rejects_bad_edges(edges, match):
    with pytest.raises(S3RInputError, match=match):
        SpatialGraph(3, edges)


def test_incidence_rows():
    graph = SpatialGraph(4, [[0, 1], [1, 2], [0, 3]], [1.0, 2.0, 0.5])
    expected = np.array([[1, -1, 0, 0], [1, 0, 0, -1], [0, 1, -1, 0]], dtype=float)
    plain = graph.incidence()
    assert sp.isspmatrix_csr(plain)
    np.testing.assert_array_equal(plain.toarray(), expected)
    weighted = graph.incidence(weighted=True).toarray()
    np.testing.assert_array_equal(weighted, expected * graph.weights[:, None])


def test_laplacian_is_incidence_gram_and_degree_minus_adjacency():
    graph = SpatialGraph(5, [[0, 1], [1, 2], [2, 0], [3, 4]], [1.0, 2.0, 3.0, 0.5])
    incidence = graph.incidence()
    laplacian = graph.laplacian().toarray()
    np.testing.assert_allclose(laplacian, (incidence.T @ sp.diags(graph.weights) @ incidence).toarray())
    adjacency = graph.adjacency().toarray()
    np.testing.assert_allclose(laplacian, np.diag(adjacency.sum(axis=1)) - adjacency)
    assert adjacency[0, 2] == adjacency[2, 0] == 3.0
    np.testing.assert_array_equal(graph.degrees(), [2, 2, 2, 1, 1])
    assert_structural_invariants(graph)


def test_unit_weights_by_default():
    graph = knn_graph(random_points(50), k=4)
    np.testing.assert_array_equal(graph.weights, 1.0)
    laplacian = graph.laplacian()
    np.testing.assert_array_equal(laplacian.diagonal(), graph.degrees())


def test_components_on_disconnected_graph():
    graph = SpatialGraph(7, [[0, 1], [1, 2], [3, 4]])
    count, labels = graph.components()
    assert count == 4  # {0,1,2}, {3,4}, {5}, {6}
    assert labels.shape == (7,)
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4]
    assert len({labels[0], labels[3], labels[5], labels[6]}) == 4


def test_with_weights_validates():
    graph = SpatialGraph(3, [[0, 1], [1, 2]])
    reweighted = graph.with_weights([2.0, 0.0])
    np.testing.assert_array_equal(reweighted.weights, [2.0, 0.0])
    np.testing.assert_array_equal(graph.weights, [1.0, 1.0])  # original untouched
    np.testing.assert_array_equal(reweighted.edges, graph.edges)
    assert reweighted.method == graph.method
    assert reweighted.adjacency().nnz == 2  # the zero-weight edge is not stored
    assert reweighted.components()[0] == 1  # but it still joins the component
    with pytest.raises(S3RInputError, match="expected 2 edge weights"):
        graph.with_weights([1.0])
    with pytest.raises(S3RInputError, match="position 1"):
        graph.with_weights([1.0, -1.0])
    with pytest.raises(S3RInputError, match="position 0"):
        graph.with_weights([np.nan, 1.0])


def test_empty_graph():
    graph = radius_graph(np.array([[0.0, 0.0], [10.0, 0.0]]), radius=1.0)
    assert graph.n_edges == 0 and graph.edges.shape == (0, 2)
    assert graph.components()[0] == 2
    assert graph.laplacian().nnz == 0
    assert graph.incidence().shape == (0, 2)


# ---------------------------------------------------------------- kNN


@pytest.mark.parametrize(
    "coords", [random_points(300, seed=1), integer_grid(12), hex_grid(15, 16)], ids=["random", "grid", "hex"]
)
@pytest.mark.parametrize("k", [1, 4, 7])
def test_knn_matches_brute_force(coords, k):
    """Plain kNN (``whole_shells=False`` on the lattices: their shells are tests/graph/test_lattice.py's)."""
    graph = knn_graph(coords, k=k, whole_shells=False)
    assert graph.method == "knn"
    neighbours = brute_knn(coords, k)
    expected = {(min(i, j), max(i, j)) for i in range(len(coords)) for j in neighbours[i]}
    assert edge_set(graph) == expected
    n = len(coords)
    assert n * k / 2 <= graph.n_edges <= n * k
    assert np.all(graph.degrees() >= k)
    assert_structural_invariants(graph)


def test_knn_ties_go_to_smaller_index():
    # Four spots at distance 1 from spot 0; with k = 2 spot 0 must pick rows 1 and 2.
    # The one-directional reference operator exposes the choice: row 0 of E = Gᵀ.
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [9.0, 9.0]])
    assert set(brute_knn(coords, 2)[0].tolist()) == {1, 2}
    sign_row_0 = reference_knn_operator(coords, k=2).T.toarray()[0]
    np.testing.assert_array_equal(sign_row_0, [-1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    # Same layout with the equidistant spots listed in the opposite order: still the two smallest rows.
    reordered = coords[[0, 4, 3, 2, 1, 5]]
    sign_row_0 = reference_knn_operator(reordered, k=2).T.toarray()[0]
    np.testing.assert_array_equal(sign_row_0, [-1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def test_knn_is_deterministic_under_repeat():
    coords = hex_grid(10, 10)
    first, second = knn_graph(coords, k=7), knn_graph(coords, k=7)
    assert np.array_equal(first.edges, second.edges)


# ---------------------------------------------------------------- Delaunay


def test_delaunay_square_with_centre():
    coords = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [1.0, 1.1]])
    graph = delaunay_graph(coords)
    assert edge_set(graph) == {(0, 1), (1, 2), (2, 3), (0, 3), (0, 4), (1, 4), (2, 4), (3, 4)}
    assert graph.method == "delaunay"


def test_delaunay_edge_count_and_invariants():
    coords = random_points(300, seed=2)
    graph = delaunay_graph(coords)
    n = len(coords)
    assert n - 1 <= graph.n_edges <= 3 * n - 6
    assert graph.components()[0] == 1
    assert_structural_invariants(graph)
    # Every nearest neighbour is a Delaunay neighbour.
    nearest = brute_knn(coords, 1)[:, 0]
    edges = edge_set(graph)
    assert all((min(i, j), max(i, j)) in edges for i, j in enumerate(nearest))


def test_delaunay_max_edge_length_separates_clusters():
    rng = np.random.default_rng(3)
    left = rng.uniform(0, 10, size=(60, 2))
    right = rng.uniform(0, 10, size=(60, 2)) + [100.0, 0.0]
    coords = np.vstack((left, right))
    assert delaunay_graph(coords).components()[0] == 1
    pruned = delaunay_graph(coords, max_edge_length=20.0)
    count, labels = pruned.components()
    assert count == 2
    assert len(set(labels[:60])) == 1 and len(set(labels[60:])) == 1
    lengths = np.linalg.norm(coords[pruned.edges[:, 0]] - coords[pruned.edges[:, 1]], axis=1)
    assert lengths.max() <= 20.0
    assert_structural_invariants(pruned)


@pytest.mark.parametrize("limit", [0, -1.0, np.nan, "far"])
def test_bad_max_edge_length(limit):
    with pytest.raises(S3RInputError, match="max_edge_length"):
        delaunay_graph(random_points(10), max_edge_length=limit)


def test_delaunay_collinear_is_a_clear_error():
    coords = np.column_stack((np.arange(6.0), 2 * np.arange(6.0) + 1))
    with pytest.raises(S3RInputError, match=r"rows 0\.\.5.*one line") as info:
        delaunay_graph(coords)
    assert info.value.__cause__ is None and "\n" not in str(info.value)
    with pytest.raises(S3RInputError, match="one line"):
        mst_graph(coords)


@pytest.mark.parametrize("n", [1, 2])
def test_delaunay_too_few_points(n):
    with pytest.raises(S3RInputError, match=rf"at least 3 spots but got {n} \(rows 0\.\.{n - 1}\)"):
        delaunay_graph(random_points(n))


# ---------------------------------------------------------------- radius


@pytest.mark.parametrize("radius", [3.0, 8.0, 15.0])
def test_radius_matches_brute_force(radius):
    coords = random_points(250, seed=4)
    graph = radius_graph(coords, radius)
    distances = pairwise(coords)
    i, j = np.nonzero(np.triu(distances <= radius, k=1))
    assert edge_set(graph) == set(zip(i.tolist(), j.tolist()))
    assert graph.method == "radius"
    assert_structural_invariants(graph)


def test_radius_is_inclusive_on_a_grid():
    graph = radius_graph(integer_grid(5), radius=1.0)
    assert graph.n_edges == 2 * 5 * 4  # 4-neighbour lattice


@pytest.mark.parametrize("radius", [0, -2, np.inf, None])
def test_bad_radius(radius):
    with pytest.raises(S3RInputError, match="radius"):
        radius_graph(random_points(10), radius)


# ---------------------------------------------------------------- MST


@pytest.mark.parametrize("seed", [5, 6])
def test_mst_matches_brute_force_length(seed):
    coords = random_points(150, seed=seed)
    graph = mst_graph(coords)
    count, _ = graph.components()
    assert count == 1 and graph.n_edges == len(coords) - count
    lengths = np.linalg.norm(coords[graph.edges[:, 0]] - coords[graph.edges[:, 1]], axis=1)
    assert lengths.sum() == pytest.approx(brute_mst_length(coords), rel=1e-12)
    assert edge_set(graph) <= edge_set(delaunay_graph(coords))
    np.testing.assert_array_equal(graph.weights, 1.0)
    assert graph.method == "mst"
    assert_structural_invariants(graph)


def test_mst_on_grid_with_ties_is_a_tree():
    coords = integer_grid(8)
    graph = mst_graph(coords)
    assert graph.n_edges == 63 and graph.components()[0] == 1
    lengths = np.linalg.norm(coords[graph.edges[:, 0]] - coords[graph.edges[:, 1]], axis=1)
    np.testing.assert_allclose(lengths, 1.0)


# ---------------------------------------------------------------- build_graph


def test_build_graph_dispatch():
    coords = random_points(80, seed=7)
    assert np.array_equal(build_graph(coords, "knn", k=5).edges, knn_graph(coords, k=5).edges)
    assert np.array_equal(build_graph(coords, "delaunay").edges, delaunay_graph(coords).edges)
    assert np.array_equal(build_graph(coords, "radius", radius=12.0).edges, radius_graph(coords, 12.0).edges)
    assert np.array_equal(build_graph(coords, "mst").edges, mst_graph(coords).edges)
    pruned = build_graph(coords, "delaunay", max_edge_length=8.0)
    assert np.array_equal(pruned.edges, delaunay_graph(coords, max_edge_length=8.0).edges)


def test_build_graph_max_edge_length_prunes_knn():
    rng = np.random.default_rng(8)
    coords = np.vstack((rng.uniform(0, 5, (20, 2)), rng.uniform(0, 5, (20, 2)) + 50))
    coords = np.vstack((coords, [[25.0, 25.0]]))  # a lone spot whose kNN edges bridge the gap
    assert knn_graph(coords, k=3).components()[0] < 3
    pruned = build_graph(coords, "knn", k=3, max_edge_length=10.0)
    assert pruned.method == "knn" and pruned.components()[0] == 3


def test_build_graph_errors():
    coords = random_points(20)
    with pytest.raises(S3RInputError, match="unknown graph method 'voronoi'.*knn, delaunay, radius, mst"):
        build_graph(coords, "voronoi")
    with pytest.raises(S3RInputError, match="needs a radius"):
        build_graph(coords, "radius")


# ---------------------------------------------------------------- reference operator


def brute_reference_operator(coords, k):
    n = len(coords)
    neighbours = brute_knn(coords, k)
    sign = np.zeros((n, n))
    for i in range(n):
        sign[i, neighbours[i]] = 1.0
        sign[i, i] = -1.0
    sign[-1, :] = 0.0
    return sign, sign.T


@pytest.mark.parametrize(
    "coords", [random_points(200, seed=9), integer_grid(10), hex_grid(12, 12)], ids=["random", "grid", "hex"]
)
@pytest.mark.parametrize("k", [3, 7])
def test_reference_operator_matches_dense_construction(coords, k):
    operator = reference_knn_operator(coords, k=k)
    sign, expected = brute_reference_operator(coords, k)
    assert sp.isspmatrix_csr(operator) and operator.dtype == np.float64
    assert operator.has_sorted_indices
    np.testing.assert_array_equal(operator.toarray(), expected)
    # E = Gᵀ: last row zero, every other row has k (+1)s and a −1 on the diagonal.
    sign_matrix = operator.T.toarray()
    np.testing.assert_array_equal(sign_matrix, sign)
    assert not sign_matrix[-1].any()
    np.testing.assert_array_equal(sign_matrix[:-1].sum(axis=1), k - 1)
    np.testing.assert_array_equal(np.diag(sign_matrix)[:-1], -1.0)
    assert operator.nnz == (len(coords) - 1) * (k + 1)


def test_reference_operator_is_one_directional():
    # Spot 3 is far out: it picks 2 as its neighbour, but nobody picks 3, so G is not symmetric in pattern.
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0], [1.0, 1.2]])
    operator = reference_knn_operator(coords, k=1).toarray()
    sign = operator.T
    assert sign[3, 4] == 1.0 and sign[4, 3] == 0.0


# ---------------------------------------------------------------- neighbour mean operator


def test_neighbour_mean_operator_small_example():
    graph = SpatialGraph(5, [[0, 1], [0, 2], [1, 2], [2, 3]])  # node 4 isolated
    operator = neighbour_mean_operator(graph)
    assert sp.isspmatrix_csr(operator)
    expected = np.array(
        [
            [1, -1 / 2, -1 / 2, 0, 0],
            [-1 / 2, 1, -1 / 2, 0, 0],
            [-1 / 3, -1 / 3, 1, -1 / 3, 0],
            [0, 0, -1, 1, 0],
            [0, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(operator.toarray(), expected, rtol=0, atol=1e-15)


def test_neighbour_mean_operator_rows_sum_to_zero():
    graph = knn_graph(random_points(300, seed=10), k=7)
    operator = neighbour_mean_operator(graph)
    np.testing.assert_allclose(np.asarray(operator.sum(axis=1)).ravel(), 0.0, atol=1e-12)
    np.testing.assert_array_equal(operator.diagonal(), 1.0)
    # A spatially constant map has zero smoothness penalty.
    np.testing.assert_allclose(operator @ np.full(300, 3.5), 0.0, atol=1e-12)
    assert operator.nnz == graph.n_nodes + 2 * graph.n_edges


# ---------------------------------------------------------------- real geometries


def test_dlpfc_visium_knn_is_its_hexagonal_ring(dlpfc_coords):
    """A real Visium section: every spot with a full ring has exactly its six, and the five-spot fragment beyond a
    gap of missing spots is joined to the tissue as kNN joins it."""
    assert dlpfc_coords.shape == (4226, 2)
    graph = knn_graph(dlpfc_coords, k=6)
    assert graph.lattice == "hexagonal, 6 neighbours"
    assert graph.components()[0] == 1
    degrees = graph.degrees()
    assert degrees.min() >= 1 and (degrees == 6).mean() > 0.9 and (degrees > 6).sum() <= 12  # above six: the fragment's bridge
    n = graph.n_nodes
    assert n * 5 / 2 <= graph.n_edges <= n * 6 / 2
    assert_structural_invariants(graph)
    delaunay = delaunay_graph(dlpfc_coords)
    assert delaunay.n_edges <= 3 * n - 6
    mst = mst_graph(dlpfc_coords)
    assert mst.n_edges == n - 1


def test_dlpfc_reference_operator_shape(dlpfc_coords):
    operator = reference_knn_operator(dlpfc_coords, k=7)
    n = len(dlpfc_coords)
    assert operator.shape == (n, n) and operator.nnz == (n - 1) * 8
    assert operator[:, -1].nnz == 0


def test_xenium_knn_is_fast_and_sparse(xenium_coords):
    assert xenium_coords.shape[0] > 20_000
    start = time.perf_counter()
    graph = knn_graph(xenium_coords, k=7)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0  # generous for shared CPUs; a dense n × n build would take minutes and ~4 GB
    n = graph.n_nodes
    assert n * 7 / 2 <= graph.n_edges <= n * 7
    laplacian = graph.laplacian()
    assert sp.issparse(laplacian) and laplacian.nnz == n + 2 * graph.n_edges
    np.testing.assert_allclose(np.asarray(laplacian.sum(axis=1)).ravel(), 0.0, atol=1e-9)
    operator = neighbour_mean_operator(graph)
    assert operator.nnz == n + 2 * graph.n_edges
