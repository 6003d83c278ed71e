"""Fold schemes, out-of-fold prediction and the held-out loss (s3r.cv)."""

from __future__ import annotations

import numpy as np
import pytest

from s3r import cv
from s3r.errors import S3RInputError
from s3r.graph import knn_graph
from s3r.simulate import simulate


@pytest.fixture(scope="module")
def sim():
    return simulate("three_regions", sigma=1.0, n_spots=120, n_features=12, seed=3)


@pytest.fixture(scope="module")
def problem(sim):
    return cv.CVProblem.from_arrays(sim.X, sim.y, sim.coords, dtype="float64")


def hex_grid(rows=14, cols=16):
    """A Visium-like lattice: many spots share a coordinate, so splits must break ties cleanly."""
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.column_stack([c.ravel() * 2 + (r.ravel() % 2), r.ravel() * np.sqrt(3)]).astype(float)


@pytest.mark.parametrize("kind", ["uniform", "hex"])
@pytest.mark.parametrize("n_blocks", [5, 7, 20])
def test_spatial_blocks_are_balanced_and_contiguous(kind, n_blocks):
    coords = np.random.default_rng(0).uniform(size=(413, 2)) if kind == "uniform" else hex_grid()
    blocks = cv.spatial_blocks(coords, n_blocks)
    sizes = np.bincount(blocks, minlength=n_blocks)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == len(coords)
    # contiguous: each block is exactly the spots of one cell of a tiling by rectangles, so the blocks'
    # bounding boxes have disjoint interiors and no other spot lies strictly inside a block's box
    boxes = [(coords[blocks == b].min(0), coords[blocks == b].max(0)) for b in range(n_blocks)]
    for b, (lo, hi) in enumerate(boxes):
        others = coords[blocks != b]
        assert not np.all((others > lo) & (others < hi), axis=1).any()
        for c, (lo2, hi2) in enumerate(boxes[:b]):
            overlap = np.minimum(hi, hi2) - np.maximum(lo, lo2)
            assert not np.all(overlap > 0), f"blocks {c} and {b} overlap"
    # and compact: most graph edges stay inside a block (random labels would keep about 1/n_blocks)
    edges = knn_graph(coords, 6).edges
    inside = np.mean(blocks[edges[:, 0]] == blocks[edges[:, 1]])
    assert inside > 0.6


def test_block_folds_balanced_seeded_and_whole_blocks(sim):
    folds = cv.spatial_block_folds(sim.coords, 5, blocks_per_fold=3, seed=1)
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 3
    blocks = cv.spatial_blocks(sim.coords, 15)
    for b in range(15):  # a block is never split between folds
        assert len(np.unique(folds[blocks == b])) == 1
    assert np.array_equal(folds, cv.spatial_block_folds(sim.coords, 5, blocks_per_fold=3, seed=1))
    assert not np.array_equal(folds, cv.spatial_block_folds(sim.coords, 5, blocks_per_fold=3, seed=2))


def test_random_folds_balanced_and_seeded():
    folds = cv.random_folds(103, 5, seed=4)
    assert np.bincount(folds).tolist() in ([21, 21, 21, 20, 20],) or np.ptp(np.bincount(folds)) <= 1
    assert np.array_equal(folds, cv.random_folds(103, 5, seed=4))
    assert not np.array_equal(folds, cv.random_folds(103, 5, seed=5))


def test_fold_errors(sim):
    with pytest.raises(S3RInputError, match="folds"):
        cv.make_folds(sim.coords, 1)
    with pytest.raises(S3RInputError, match="fold scheme"):
        cv.make_folds(sim.coords, 5, "stripes")


@pytest.mark.parametrize("scaling", ["reference", "standard"])
def test_heldout_response_never_enters_its_own_prediction(sim, scaling):
    """Not through the fit, the mask, nor (standard scaling) the response's centre and spread."""
    problem = cv.CVProblem.from_arrays(sim.X, sim.y, sim.coords, dtype="float64", model={"scaling": scaling})
    folds = cv.make_folds(sim.coords, 4, "blocks", seed=0)
    params = [{"lambda_smooth": 0.05, "alpha": 0.003, "beta": 0.003}, {"lambda_smooth": 0.3, "alpha": 0.001, "beta": 0.01}]
    if scaling == "standard":
        sc = problem.natural_scales()
        params = [{k: sc[k] * f for k, f in zip(sc, fr)} for fr in ((1e-2, 1e-4, 1e-3), (1e-1, 1e-3, 1e-2))]
    held = cv.heldout_mask(folds, 1)
    base = cv.solve_fold(problem, params, folds, 1, tol=1e-4, max_iter=2000)
    assert base.converged.all()
    y2 = sim.y.copy()
    y2[held] = np.where(np.arange(held.sum()) % 3 == 0, 0.0, -5.0 * y2[held] + 7.0)  # including y = 0 (the mask)
    changed = cv.CVProblem.from_arrays(sim.X, y2, sim.coords, dtype="float64", model={"scaling": scaling})
    again = cv.solve_fold(changed, params, folds, 1, tol=1e-4, max_iter=2000)
    W1, W0 = changed.coefficients(again.W)[0], problem.coefficients(base.W)[0]
    if scaling == "reference":
        assert np.array_equal(W1, W0)
    else:  # the same problem on another scale: equal within the solver's tolerance (a leak would move W by ~50 %)
        np.testing.assert_allclose(W1, W0, rtol=0, atol=1e-4 * np.abs(W0).max())
        assert abs(changed.y_scale / problem.y_scale - 1) > 0.5
    pred = lambda pr, sol: pr.y_center + pr.y_scale * (cv.predict(pr.X, sol.W) + pr.covariates @ sol.gamma.T)  # noqa: E731
    if scaling == "standard":
        a, b = pred(changed, again)[held], pred(problem, base)[held]
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())
    # the graph predictor is not trivial: held-out spots get non-zero coefficients from their neighbours
    assert np.abs(W0[held]).sum() > 0


def test_neighbour_average_uses_spatial_neighbours():
    rng = np.random.default_rng(1)
    coords = rng.uniform(size=(60, 2))
    W = np.column_stack([coords[:, 0], coords[:, 1] ** 2, np.arange(60.0)])
    train = rng.uniform(size=60) > 0.3
    out = cv.neighbour_average(W, coords, train, k=4)
    assert np.array_equal(out[train], W[train])
    for i in np.flatnonzero(~train):
        d = np.linalg.norm(coords[train] - coords[i], axis=1)
        expected = W[train][np.argsort(d)[:4]].mean(0)
        assert np.allclose(out[i], expected)
    # renumbering the spots changes nothing: neighbours come from space, not from index numbers
    perm = rng.permutation(60)
    shuffled = cv.neighbour_average(W[perm], coords[perm], train[perm], k=4)
    assert np.allclose(shuffled, out[perm])


def test_scored_spots_skip_dropouts_only_with_the_mask():
    y = np.array([0.0, 1.0, 2.0, 0.0])
    held = np.array([True, True, False, False])
    assert cv.scored_spots(y, held, True).tolist() == [False, True, False, False]
    assert cv.scored_spots(y, held, False).tolist() == [True, True, False, False]
    assert cv.free_rows(y, held, True).tolist() == [1.0, 1.0, 1.0, 0.0]
    assert cv.heldout_mse(np.array([1.0, 2.0]), np.array([[1.0, 0.0], [4.0, 2.0]]), np.array([True, True])).tolist() == [2.0, 0.5]


@pytest.mark.parametrize("scaling", ["reference", "standard"])
def test_zero_screen_agrees_with_the_solver(sim, scaling):
    """Exact at the screening thresholds, with the intercept (standard) at its own optimum."""
    problem = cv.CVProblem.from_arrays(sim.X, sim.y, sim.coords, dtype="float64", model={"scaling": scaling})
    folds = cv.make_folds(sim.coords, 3, "random", seed=0)
    weights = cv.training_weights(folds, 0)
    sc = problem.natural_scales(weights)
    fr = ((1.02, 1e-4), (1e-4, 1.02), (0.97, 1e-4), (1e-2, 1e-2))
    params = [{"lambda_smooth": 1e-3 * sc["lambda_smooth"], "alpha": a * sc["alpha_zero"], "beta": b * sc["beta_zero"]} for a, b in fr]
    lam, alpha, beta = cv._penalties(problem, params, weights)
    zero = cv.zero_is_optimal(problem, weights, alpha, beta)
    assert zero.tolist() == [True, True, False, False]
    from s3r.solver import solve_batch

    res = solve_batch(problem.X, np.repeat(problem.y[:, None], 4, 1), smooth="tv", operator=problem.operator, lambda_smooth=lam,
                      alpha=alpha, beta=beta, weights=weights, free_rows=problem.free_rows(cv.heldout_mask(folds, 0)),
                      covariates=problem.covariates, tol=1e-7, max_iter=20000)
    W = np.abs(res.W.numpy()).max(axis=(0, 2))
    assert W[0] < 1e-8 and W[1] < 1e-8 and W[2] > 1e-6 and W[3] > 1e-2 * np.abs(problem.y).max()


def test_cross_validate_shapes_and_predictors(sim, problem):
    folds = cv.make_folds(sim.coords, 3, "blocks", seed=0)
    sc = problem.natural_scales()
    params = [{"lambda_smooth": 1e-2 * sc["lambda_smooth"], "alpha": 1e-4 * sc["alpha"], "beta": 1e-3 * sc["beta"]},
              {name: 2.0 * sc[name] for name in ("lambda_smooth", "alpha", "beta")}]
    graph = cv.cross_validate(problem, params, folds, tol=1e-3)
    assert graph.shape == (3, 2)
    # the all-zero map leaves the intercept fitted on the training spots: its loss is the null model's
    for f in range(3):
        held = folds == f
        assert graph[f, 1] == pytest.approx(np.mean((sim.y[held] - sim.y[~held].mean()) ** 2))
        assert graph[f, 1] == pytest.approx(cv.null_loss(problem, folds, f))
    assert np.all(graph[:, 0] < graph[:, 1])
    solution = cv.solve_fold(problem, params, folds, 0, tol=1e-3)
    nbrs = cv.fold_losses(problem, solution, folds, 0, "neighbours")
    assert nbrs[1] == pytest.approx(graph[0, 1]) and nbrs[0] != graph[0, 0]

def test_map_pieces_counts_fused_constant_pieces():
    """The fused lasso's degrees of freedom: non-zero constant pieces per feature (tv); non-zeros otherwise."""
    coords = np.array([[x, y] for x in range(6) for y in range(4)], dtype=float)
    left = coords[:, 0] < 3
    X = np.random.default_rng(0).normal(size=(24, 3))
    tv = cv.CVProblem.from_arrays(X, X[:, 0], coords, dtype="float64", model={"smooth": "tv", "graph": "knn", "k": 4})
    W = np.zeros((24, 3, 3))
    W[:, 0, 0] = 1.0  # one piece
    W[:, 1, 0] = np.where(left, 1.0, -2.0)  # two pieces of one feature
    W[:, 1, 2] = np.where(left, 0.5, 0.0)  # plus one non-zero piece of another
    W[:, 2, :] = np.arange(24)[:, None] + 1.0  # every spot its own value in every feature: 72 pieces
    W[0, 2, 0] = W[1, 2, 0] + 0.01  # neighbours (0, 0) and (0, 1) within rtol × 24 of each other: one piece
    pieces = cv.map_pieces(tv, W)
    assert pieces[:2].tolist() == [1, 3]
    assert pieces[2] == 71
    quad = cv.CVProblem.from_arrays(X, X[:, 0], coords, dtype="float64", model={"smooth": "quadratic"})
    assert cv.map_pieces(quad, W).tolist() == [24, 36, 72]


def test_map_pieces_sparse_map_matches_per_feature_count():
    """Counting over the non-zero entries only gives the per-feature count of pieces among non-zero spots."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(3)
    coords = rng.uniform(size=(400, 2))
    X = rng.normal(size=(400, 30))
    tv = cv.CVProblem.from_arrays(X, X[:, 0], coords, dtype="float64", model={"smooth": "tv", "graph": "knn", "k": 5})
    W = np.zeros((400, 2, 30))
    region = (coords[:, 0] * 3).astype(int) + 3 * (coords[:, 1] * 2).astype(int)  # 6 blocks
    for b, active in enumerate(([1, 7, 20], [4])):
        for j in active:
            levels = rng.choice([0.0, 0.0, 1.0, -2.0, 3.0], size=6)
            W[:, b, j] = levels[region]
        W[rng.choice(400, 10, replace=False), b, active[0]] = rng.normal(size=10)  # isolated spikes: own pieces
    edges = tv.graph.edges
    for b in range(2):
        expected = 0
        tol = 1e-3 * np.abs(W[:, b]).max()
        for j in range(30):
            w = W[:, b, j]
            nz = np.abs(w) > tol
            keep = nz[edges[:, 0]] & nz[edges[:, 1]] & (np.abs(w[edges[:, 0]] - w[edges[:, 1]]) <= tol)
            g = sp.coo_matrix((np.ones(keep.sum()), (edges[keep, 0], edges[keep, 1])), shape=(400, 400))
            labels = connected_components(g, directed=False)[1]
            expected += np.unique(labels[nz]).size
        assert expected > 5
        assert cv.map_pieces(tv, W[:, b : b + 1])[0] == expected
