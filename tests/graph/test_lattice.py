"""kNN on a lattice joins whole distance shells: the graph has the lattice's symmetry, whatever the skew or spot order."""

from pathlib import Path

import numpy as np
import pytest

from s3r.errors import S3RInputError
from s3r.graph import build_graph, knn_graph
from s3r.graph.lattice import detect_lattice
from s3r.graph_io import graph_summary, read_graph, write_graph

DLPFC = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "dlpfc_151675.h5ad"


def hex_lattice(rows, cols, spacing=1.0, shear=0.0):
    """Visium's layout; ``shear`` skews it as a scanned slide is (DLPFC's rings spread by ~0.1 %)."""
    xy = np.array([(c + 0.5 * (r % 2), r * np.sqrt(3) / 2) for r in range(rows) for c in range(cols)]) * spacing
    return xy @ np.array([[1.0, 0.0], [shear, 1.0]])


def square_lattice(side, spacing=8.0):
    gy, gx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return np.column_stack((gx.ravel(), gy.ravel())).astype(float) * spacing


def axis_counts(xy, graph, period=180):
    """Edges per direction, rounded to 30°, modulo ``period``."""
    v = xy[graph.edges[:, 1]] - xy[graph.edges[:, 0]]
    angle = (np.round(np.degrees(np.arctan2(v[:, 1], v[:, 0])) / 30) * 30) % period
    values, counts = np.unique(angle, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def interior(xy, margin):
    lo, hi = xy.min(0) + margin, xy.max(0) - margin
    return np.all((xy > lo) & (xy < hi), axis=1)


@pytest.mark.parametrize("shear", [0.0, 0.002])
def test_hexagonal_lattice_gives_the_ring_of_six_on_three_equal_axes(shear):
    xy = hex_lattice(20, 24, spacing=137.0, shear=shear)
    plain = knn_graph(xy, k=7, whole_shells=False)
    for k in (6, 7, 11):
        graph = knn_graph(xy, k=k)
        assert graph.lattice == "hexagonal, 6 neighbours"
        assert set(graph.degrees()[interior(xy, 2 * 137.0)].tolist()) == {6}
        counts = axis_counts(xy, graph)
        assert sorted(counts) == [0.0, 60.0, 120.0]
        assert max(counts.values()) - min(counts.values()) <= 24  # the three axes, up to the border
    # plain kNN's seventh neighbour is one of six equidistant second-ring spots: always on the same side
    assert plain.n_edges > graph.n_edges
    extra = axis_counts(xy, plain)
    assert len(extra) > 3 and min(extra.values()) < max(extra.values()) / 2


def test_hexagonal_lattice_with_twelve_takes_both_rings():
    xy = hex_lattice(20, 20)
    graph = knn_graph(xy, k=12)
    assert graph.lattice == "hexagonal, 12 neighbours"
    assert set(graph.degrees()[interior(xy, 3.0)].tolist()) == {12}
    assert knn_graph(xy, k=17).edges.tolist() == graph.edges.tolist()


def test_below_the_first_ring_k_decides_as_knn():
    xy = hex_lattice(12, 12)
    graph = knn_graph(xy, k=4)
    assert graph.lattice is None
    assert graph.edges.tolist() == knn_graph(xy, k=4, whole_shells=False).edges.tolist()


def test_square_bins_give_their_sides_then_their_diagonals():
    xy = square_lattice(30)
    rook, queen = knn_graph(xy, k=7), knn_graph(xy, k=8)
    assert rook.lattice == "square, 4 neighbours" and queen.lattice == "square, 8 neighbours"
    inside = interior(xy, 2 * 8.0)
    assert set(rook.degrees()[inside].tolist()) == {4} and set(queen.degrees()[inside].tolist()) == {8}
    assert axis_counts(xy, rook) == {0.0: 30 * 29, 90.0: 30 * 29}


def visium_array_indices(rows, cols):
    """The spots' (array_col, array_row) as Space Ranger numbers them: a row's spots 2 apart, rows offset by 1."""
    return np.array([(c, r) for r in range(rows) for c in range(cols) if (r + c) % 2 == 0], dtype=float)


@pytest.mark.parametrize("method", ["knn", "delaunay", "radius"])
def test_visium_array_indices_are_refused_with_the_fix(method):
    xy = visium_array_indices(24, 40)
    tissue = xy[np.hypot(xy[:, 0] - 20, (xy[:, 1] - 12) * np.sqrt(3)) < 18]  # a round section, not the whole area
    for coords in (xy, tissue, xy[:, ::-1]):
        with pytest.raises(S3RInputError, match=r"Visium array indices .* y = √3 · array_row"):
            build_graph(coords, method, radius=1.5)
    # the fix the message gives is the hexagonal lattice itself: its ring of six on three equal axes
    fixed = xy * np.array([1.0, np.sqrt(3)])
    graph = build_graph(fixed, "knn")
    assert graph.lattice == "hexagonal, 6 neighbours"
    counts = axis_counts(fixed, graph)
    assert sorted(counts) == [0.0, 60.0, 120.0] and max(counts.values()) - min(counts.values()) <= 40


def test_positions_are_not_taken_for_array_indices():
    assert build_graph(square_lattice(20, spacing=1.0)).lattice == "square, 4 neighbours"  # bins' indices: every parity
    assert build_graph(np.round(hex_lattice(20, 24, spacing=137.0))).lattice == "hexagonal, 6 neighbours"  # integer pixels
    turned = np.round(visium_array_indices(24, 40) @ np.array([[1.0, 0.2], [-0.2, 1.0]]), 6)  # not integers
    assert build_graph(turned).n_edges > 0


def test_irregular_points_keep_plain_knn():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 1000, size=(2000, 2))
    for k in (4, 7, 12):
        assert detect_lattice(xy, k) is None
        graph = knn_graph(xy, k=k)
        assert graph.lattice is None
        assert graph.edges.tolist() == knn_graph(xy, k=k, whole_shells=False).edges.tolist()


def test_the_graph_does_not_depend_on_the_spot_order():
    """Reordering the spots (another barcode order) gives the same graph; plain kNN's tie-breaks did not."""
    xy = hex_lattice(16, 16, spacing=100.0)
    order = np.random.default_rng(0).permutation(len(xy))  # spot a of xy[order] is spot order[a] of xy

    def in_original_numbering(graph):
        return {tuple(sorted(pair)) for pair in order[graph.edges].tolist()}

    def original(graph):
        return {tuple(pair) for pair in graph.edges.tolist()}

    assert in_original_numbering(knn_graph(xy[order], k=7)) == original(knn_graph(xy, k=7))
    assert in_original_numbering(knn_graph(xy[order], k=7, whole_shells=False)) != original(knn_graph(xy, k=7, whole_shells=False))


def test_stray_spots_and_fragments_are_joined_and_a_second_piece_stays_apart():
    """A stray spot and a three-spot fragment (< 1 % of the spots) keep their kNN edges, as kNN joins them — on their
    own they would fit their own regression; a second piece of 30 spots beyond a gap smooths within itself."""
    xy = hex_lattice(20, 20)
    stray = np.array([[25.0, 0.0]])
    fragment = np.array([[0.0, 22.0], [1.0, 22.0], [0.5, 22.0 + np.sqrt(3) / 2]])
    piece = hex_lattice(5, 6) + np.array([40.0, 0.0])
    coords = np.vstack((xy, stray, fragment, piece))
    graph = knn_graph(coords, k=7)
    assert graph.lattice == "hexagonal, 6 neighbours"
    degrees = graph.degrees()
    assert degrees[len(xy)] == 7 and set(degrees[len(xy) + 1 : len(xy) + 4].tolist()) == {7}
    assert sorted(np.bincount(graph.components()[1]).tolist()) == [30, len(xy) + 4]
    assert set(degrees[: len(xy)][interior(xy, 2.0)].tolist()) == {6}  # the lattice itself is untouched


def test_the_lattice_is_recorded_and_stored(tmp_path):
    xy = hex_lattice(10, 10)
    graph = build_graph(xy, "knn", k=7, max_edge_length=5.0)
    assert graph.lattice == "hexagonal, 6 neighbours"
    write_graph(tmp_path / "g.npz", graph)
    again = read_graph(tmp_path / "g.npz")
    assert again.lattice == graph.lattice and again.edges.tolist() == graph.edges.tolist()
    assert graph_summary(graph)["lattice"] == "hexagonal, 6 neighbours"
    assert graph_summary(knn_graph(np.random.default_rng(0).uniform(size=(50, 2)), k=7))["lattice"] is None
    assert "lattice='hexagonal, 6 neighbours'" in repr(graph)
    assert graph.subgraph(np.arange(20)).lattice == graph.lattice


@pytest.mark.skipif(not DLPFC.exists(), reason="real DLPFC section not in ../shared/data/real")
def test_real_visium_section_is_smoothed_equally_along_its_three_axes():
    import anndata

    adata = anndata.read_h5ad(DLPFC, backed="r")
    xy = np.asarray(adata.obsm["spatial"], dtype=float)
    adata.file.close()
    graph, plain = knn_graph(xy, k=7), knn_graph(xy, k=7, whole_shells=False)
    counts = axis_counts(xy, graph)
    axes = {a: counts[a] for a in (0.0, 60.0, 120.0)}
    assert graph.lattice == "hexagonal, 6 neighbours" and sum(axes.values()) > 0.995 * graph.n_edges  # the rest: stray spots
    assert max(axes.values()) / min(axes.values()) < 1.02
    # plain kNN's seventh neighbours (one per spot) lie along two of the second ring's three axes
    second_ring = {a: c for a, c in axis_counts(xy, plain).items() if a not in axes}
    assert sum(second_ring.values()) > 2500 and min(second_ring.values()) < 0.15 * max(second_ring.values())


def test_a_fit_on_a_hexagonal_lattice_reports_its_ring():
    from s3r import S3R

    xy = hex_lattice(12, 12, spacing=100.0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(xy), 3))
    y = X[:, 0] * (xy[:, 0] > 600) + 0.1 * rng.normal(size=len(xy))
    model = S3R(lambda_smooth=0.05, alpha=0.01, beta=0.01).fit(X, y, xy)
    assert model.report_["lattice"] == "hexagonal, 6 neighbours"
    assert model.report_["n_edges"] == knn_graph(xy, k=7).n_edges < knn_graph(xy, k=7, whole_shells=False).n_edges
