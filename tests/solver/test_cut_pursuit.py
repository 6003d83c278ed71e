"""Cut pursuit (s3r.solver.cut_pursuit) against cvxpy and against the primal–dual solver."""

from __future__ import annotations

import numpy as np
import pytest

from s3r.graph import knn_graph
from s3r.simulate import simulate
from s3r.solver import build_operator, solve_batch
from s3r.solver.cut_pursuit import cut_pursuit

from test_solver import cvxpy_optimum
from test_working_set import wide_problem


def run(X, y, graph, lam, alpha, beta, **kw):
    return cut_pursuit(X, y, lambda_smooth=lam, alpha=alpha, beta=beta, edges=graph.edges, edge_weights=np.ones(graph.n_edges), **kw)


@pytest.mark.parametrize("variant", ["plain", "weighted_covariates"])
def test_refines_several_times_and_matches_cvxpy(variant):
    coords, X, y = wide_problem(seed=3, n=60, p=14, informative=5)
    n, p = X.shape
    rng = np.random.default_rng(1)
    weights, Z = None, None
    if variant == "weighted_covariates":
        weights = rng.uniform(0.2, 1.0, size=n)
        Z = np.column_stack([np.ones(n), rng.normal(size=n)])
        y = y + Z @ np.array([2.0, -1.0])
    graph = knn_graph(coords, 5)
    lam, alpha, beta = 0.01, 0.02, 0.03
    res = run(X, y, graph, lam, alpha, beta, weights=weights, covariates=Z, tol=1e-7)
    assert res.converged and res.slope <= 1e-7
    sizes = [h["components"] for h in res.history]
    assert sizes == sorted(sizes) and len(set(sizes)) >= (3 if variant == "plain" else 2)  # refined (plain: at least twice)
    assert 0 < len(res.working_set) < p  # some features certified at zero without being solved for
    expected = cvxpy_optimum(X, y, graph.incidence(), "tv", lam, alpha, beta, weights=weights, Z=Z)
    assert res.objective == pytest.approx(expected, rel=1e-6)
    outside = np.setdiff1d(np.arange(p), res.working_set)
    assert np.all(res.W[:, outside] == 0)


def test_agrees_with_the_primal_dual_solver_on_a_simulated_section():
    """1,500 spots of the realistic design: the same optimum, to the tolerance, and the same selected features."""
    sim = simulate("three_regions", geometry="uniform", n_spots=1500, seed=0, design="expression", sigma=0.2)
    graph = knn_graph(sim.coords, 7)
    X = (sim.X - sim.X.mean(0)) / sim.X.std(0)
    y = (sim.y - sim.y.mean()) / sim.y.std()
    Z = np.ones((len(y), 1))
    lam, alpha, beta = 5e-3, 3e-4, 3e-4
    op = build_operator("tv", edges=graph.edges, n_nodes=len(y))
    ref = solve_batch(X, y, smooth="tv", operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, covariates=Z, tol=1e-8,
                      max_iter=200_000, device="cpu", dtype="float64")
    res = run(X, y, graph, lam, alpha, beta, covariates=Z, tol=1e-6)
    assert ref.converged[0] and res.converged
    assert res.objective <= ref.objective[0] * (1 + 1e-7)  # at least as good as the certified primal–dual answer
    assert res.objective == pytest.approx(ref.objective[0], rel=1e-6)
    W_ref = ref.W[:, 0].numpy()
    assert np.abs(res.W - W_ref).max() <= 1e-2 * np.abs(W_ref).max()
    assert set(np.flatnonzero(np.abs(res.W).max(0) > 0)) == set(np.flatnonzero(np.abs(W_ref).max(0) > 1e-6 * np.abs(W_ref).max()))
    assert res.components < 0.2 * len(y)  # the answer has pieces, not one value per spot


def test_strong_penalties_give_zero_without_a_split():
    coords, X, y = wide_problem(seed=4, n=50, p=10, informative=3)
    graph = knn_graph(coords, 5)
    Z = np.ones((len(y), 1))
    res = run(X, y, graph, 1.0, 5.0, 5.0, covariates=Z)
    assert res.converged and not res.W.any() and res.refinements == 0
    assert res.gamma[0] == pytest.approx(y.mean())


def test_a_start_at_the_answer_is_certified_at_once():
    coords, X, y = wide_problem(seed=3, n=60, p=14, informative=5)
    graph = knn_graph(coords, 5)
    first = run(X, y, graph, 0.01, 0.02, 0.03, tol=1e-7)
    again = run(X, y, graph, 0.01, 0.02, 0.03, tol=1e-7, W0=first.W)
    assert again.converged and again.refinements <= 1
    assert again.objective == pytest.approx(first.objective, rel=1e-9)
