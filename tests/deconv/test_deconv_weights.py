"""The w-step: infeasible bounds are named by spot with the option to change; feasible LPs are solved exactly."""

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from s3r.deconv import Deconvolution, check_weight_bounds, simulate_deconvolution
from s3r.deconv.operators import Incidence
from s3r.deconv.wstep import solve_w_step, uniform_weights
from s3r.errors import S3RInputError
from s3r.graph import SpatialGraph, delaunay_graph


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def star_with_tail():
    """Spot 0 joined to leaves 1 and 2 and to spot 3, which continues to 4."""
    return SpatialGraph(5, np.array([[0, 1], [0, 2], [0, 3], [3, 4]]))


def test_degree_times_w_min_above_one_names_spots_and_the_limit():
    graph = SpatialGraph(5, np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [3, 4]]))
    names = ["hub", "a", "b", "c", "d"]
    with pytest.raises(S3RInputError) as err:
        check_weight_bounds(graph.edges, 5, 0.3, 1.0, node_names=names, graph_method="delaunay")
    message = str(err.value)
    assert "\n" not in message
    assert "hub" in message and "degree·w_min > 1" in message
    assert "lower --w-min to at most 0.25" in message and "--fixed-weights" in message


def test_mst_leaves_with_small_w_max_name_the_leaves():
    graph = star_with_tail()
    with pytest.raises(S3RInputError) as err:
        check_weight_bounds(graph.edges, 5, 0.0, 0.5, graph_method="mst")
    message = str(err.value)
    assert "degree·w_max < 1" in message and "spot 1" in message and "raise --w-max to at least 1" in message


def test_two_leaf_neighbours_make_the_lp_infeasible_whatever_the_bounds():
    graph = star_with_tail()
    with pytest.raises(S3RInputError) as err:
        check_weight_bounds(graph.edges, 5, 0.0, 1.0, graph_method="mst")
    message = str(err.value)
    assert "spot 0" in message and "two or more leaf spots" in message and "--graph delaunay" in message
    # and HiGHS agrees that no weighting exists
    result = linprog(np.ones(4), A_eq=abs(graph.incidence()).T.toarray(), b_eq=np.ones(5), bounds=(0.0, 1.0), method="highs")
    assert result.status == 2


def test_isolated_spots_are_named():
    graph = SpatialGraph(4, np.array([[0, 1], [1, 2]]))
    with pytest.raises(S3RInputError, match=r"without edges.*spot 3"):
        check_weight_bounds(graph.edges, 4, 0.05, 1.0)


def test_equal_constraint_on_a_real_mst_fails_before_any_iteration_with_one_line():
    sim = simulate_deconvolution("dlpfc_151507", n_spots=300, seed=1)
    model = Deconvolution(2, graph="mst", weight_constraint="equal", max_iter=1)
    with pytest.raises(S3RInputError) as err:
        model.fit(sim.scores, sim.coords)
    assert "\n" not in str(err.value) and "mst" in str(err.value)
    assert not hasattr(model, "mixture_")
    # fixed weights are a way out
    Deconvolution(2, graph="mst", learn_weights=False, max_iter=2).fit(sim.scores, sim.coords)


def test_at_least_constraint_learns_weights_on_a_tree():
    """The default w-step on an MST: feasible, every leaf edge at min(1, w_max), weights moved off the
    boundary edges (low weight where the true regions differ)."""
    sim = simulate_deconvolution("dlpfc_151507", n_spots=300, seed=1)
    model = Deconvolution(2, graph="mst", lambda_smooth=10.0, w_max=0.8, max_iter=15, seed=1).fit(sim.scores, sim.coords)
    edges, weights = model.graph_.edges, model.edge_weights_
    assert model.report_["feasibility"]["constraint"] == "at_least"
    assert sum(step["weights_changed"] for step in model.report_["steps"]) >= 1
    degree = np.bincount(edges.ravel(), minlength=300)
    leaf_edge = (degree[edges[:, 0]] == 1) | (degree[edges[:, 1]] == 1)
    np.testing.assert_allclose(weights[leaf_edge], 0.8, atol=1e-9)
    sums = np.bincount(edges.ravel(), weights=np.repeat(weights, 2), minlength=300)
    assert sums.min() >= np.minimum(1.0, degree * 0.8).min() - 1e-9
    crossing = sim.regions[edges[:, 0]] != sim.regions[edges[:, 1]]
    assert crossing.any() and weights[crossing].mean() < weights[~crossing].mean()


def test_at_least_lp_is_feasible_where_equal_is_not():
    # a star: the centre has three leaves, each leaf edge must carry 1, so "equal" cannot hold at the centre
    edges = np.array([[0, 1], [0, 2], [0, 3]])
    incidence = Incidence(4, edges, 1, torch.device("cpu"), torch.float64)
    with pytest.raises(S3RInputError, match="infeasible"):
        check_weight_bounds(edges, 4, 0.0, 1.0, graph_method="mst")
    weights = solve_w_step(np.array([1.0, 2.0, 3.0]), incidence.node_edge_matrix(), 0.0, 0.5, "at_least")
    np.testing.assert_allclose(weights, 0.5)  # each leaf needs min(1, 1·0.5) = 0.5
    # a path a–b–c–d with a dear middle edge: the ends keep their edges, the middle one drops to w_min
    path = np.array([[0, 1], [1, 2], [2, 3]])
    incidence = Incidence(4, path, 1, torch.device("cpu"), torch.float64)
    weights = solve_w_step(np.array([1.0, 5.0, 1.0]), incidence.node_edge_matrix(), 0.1, 1.0, "at_least")
    np.testing.assert_allclose(weights, [1.0, 0.1, 1.0], atol=1e-9)


def test_lp_solution_is_feasible_and_optimal():
    rng = np.random.default_rng(0)
    graph = delaunay_graph(rng.uniform(size=(60, 2)))
    feasibility = check_weight_bounds(graph.edges, 60, 0.05, 1.0)
    assert feasibility.feasible and feasibility.w_min_limit == pytest.approx(1 / graph.degrees().max())
    incidence = Incidence(60, graph.edges, 1, torch.device("cpu"), torch.float64)
    costs = rng.exponential(size=graph.n_edges)
    weights = solve_w_step(costs, incidence.node_edge_matrix(), 0.05, 1.0)
    np.testing.assert_allclose(abs(graph.incidence()).T @ weights, 1.0, atol=1e-9)
    assert weights.min() >= 0.05 - 1e-12 and weights.max() <= 1.0 + 1e-12
    reference = linprog(costs, A_eq=abs(graph.incidence()).T, b_eq=np.ones(60), bounds=(0.05, 1.0), method="highs-ipm")
    assert costs @ weights == pytest.approx(reference.fun, rel=1e-7)
    # weight moves away from expensive edges: the cheapest half carries more than the dearest half
    cheap = costs < np.median(costs)
    assert weights[cheap].mean() > weights[~cheap].mean()


def test_uniform_weights_sum_to_about_one_per_spot():
    graph = delaunay_graph(np.random.default_rng(1).uniform(size=(200, 2)))
    sums = abs(graph.incidence()).T @ uniform_weights(graph.edges, 200)
    assert 0.6 < sums.min() and sums.max() < 1.6 and abs(np.median(sums) - 1) < 0.1
