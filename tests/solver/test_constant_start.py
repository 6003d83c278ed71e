"""Compositional (rank-deficient) designs and the constant-model start: exact optima against cvxpy.

Cell-type proportions sum to one in every spot, so with an intercept the design is exactly rank deficient; at a λ
that fuses the map the solver starts from the global regression (s3r.solver.constant_start), elsewhere it runs cold.
"""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pytest

import s3r.solver.batch as batch
from s3r.graph import knn_graph
from s3r.solver import build_operator, solve_batch
from s3r.solver.constant_start import constant_start, global_lasso

from test_solver import cvxpy_optimum

TOL = 1e-7


def compositional_problem(seed=0, n=50, p=4):
    """Proportions (rows sum to one) as features, an intercept, and a target driven by the first type's share."""
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    X = rng.dirichlet(np.ones(p), size=n)
    y = 1.0 + 2.0 * X[:, 0] * (coords[:, 0] > 0.5) + 0.2 * rng.normal(size=n)
    return coords, X, y


def solve(X, y, graph, lam, alpha, beta, **kw):
    K = build_operator("tv", edges=graph.edges, n_nodes=len(X))
    return solve_batch(X, y, smooth="tv", operator=K, lambda_smooth=lam, alpha=alpha, beta=beta,
                       covariates=np.ones((len(X), 1)), tol=TOL, max_iter=200_000, **kw)


def test_the_design_is_rank_deficient_with_the_intercept():
    _, X, _ = compositional_problem()
    assert np.linalg.matrix_rank(np.c_[np.ones(len(X)), X]) == X.shape[1]


def test_global_lasso_matches_cvxpy_on_a_rank_deficient_design():
    _, X, y = compositional_problem(seed=1)
    n, p = X.shape
    pen = np.array([0.01, 0.02, 0.0, 0.05])
    w, gamma = global_lasso(X, y, np.ones(n), np.ones((n, 1)), pen)
    wv, gv = cp.Variable(p), cp.Variable()
    obj = lambda w_, g_: cp.sum_squares(y - X @ w_ - g_) / n + pen @ cp.abs(w_)  # noqa: E731
    expected = cp.Problem(cp.Minimize(obj(wv, gv))).solve(solver=cp.CLARABEL)
    assert obj(w, gamma[0]).value <= expected * (1 + 1e-8) + 1e-12


@pytest.mark.parametrize("lam", [0.05, 0.002])
def test_rank_deficient_problem_matches_cvxpy(lam):
    """Fused (λ 0.05: the constant start is certified) and not fused (λ 0.002: the cold path) both reach the optimum."""
    coords, X, y = compositional_problem(seed=2)
    graph = knn_graph(coords, 5)
    res = solve(X, y, graph, lam, 0.002, 0.001, dtype="float64")
    expected = cvxpy_optimum(X, y, graph.incidence(), "tv", lam, 0.002, 0.001, Z=np.ones((len(X), 1)))
    assert res.converged[0]
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)
    assert (res.constant_start is not None) == (lam == 0.05)


def test_the_constant_start_is_the_optimum_and_the_cold_path_agrees(monkeypatch):
    coords, X, y = compositional_problem(seed=3, n=60)
    graph = knn_graph(coords, 5)
    warm = solve(X, y, graph, 0.05, 0.002, 0.001, dtype="mixed")
    assert warm.constant_start is not None and warm.constant_start[0] <= 1.0
    assert warm.converged[0] and warm.iterations[0] <= 200  # started at the optimum: PDHG only certifies it
    assert warm.precision["float32_iterations"] == [0]  # float64 at once, no float32 stage stuck at its floor
    W = warm.W[:, 0].numpy()
    assert np.allclose(W, W[0], atol=1e-5)  # one constant map
    monkeypatch.setattr(batch, "CONSTANT_START", False)
    cold = solve(X, y, graph, 0.05, 0.002, 0.001, dtype="float64", coarsen=False)
    assert cold.constant_start is None
    assert abs(cold.objective[0] - warm.objective[0]) <= 1e-5 * abs(warm.objective[0])


def test_two_components_are_not_started_constant():
    coords, X, y = compositional_problem(seed=4, n=40)
    coords[20:, 0] += 100.0  # two far apart halves: the 5-NN graph splits
    graph = knn_graph(coords, 5)
    assert graph.components()[0] == 2
    K = build_operator("tv", edges=graph.edges, n_nodes=40).to_scipy()
    start = constant_start(X, y[:, None], np.ones((40, 1)), np.ones((40, 1)), np.array([0.002]), np.array([0.001]),
                           np.ones(X.shape[1]), np.array([1.0]), K)
    assert np.isinf(start["flow_ratio"]).all()
    res = solve(X, y, graph, 1.0, 0.002, 0.001, dtype="float64")
    assert res.constant_start is None and res.converged[0]


def test_the_estimator_warns_on_compositional_features_only():
    from s3r import S3R

    coords, X, y = compositional_problem(seed=5)
    with pytest.warns(UserWarning, match="contrasts"):
        model = S3R("tv", 5.0, 0.01, 0.01, device="cpu").fit(X, y, coords)
    assert model.report_["converged"]
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        S3R("tv", 5.0, 0.01, 0.01, device="cpu").fit(X + 0.01 * rng.uniform(size=X.shape), y, coords)  # not exact: silent
        S3R("tv", 5.0, 0.01, 0.01, fit_intercept=False, device="cpu").fit(X, y, coords)  # no intercept to span: silent


def test_the_constant_start_goes_through_the_working_set():
    """Twenty types (working sets switch on): the start's support seeds the set, the answer is still cvxpy's."""
    coords, X, y = compositional_problem(seed=6, n=60, p=20)
    graph = knn_graph(coords, 5)
    res = solve(X, y, graph, 0.05, 0.004, 0.002, dtype="float64", working_set=True)
    expected = cvxpy_optimum(X, y, graph.incidence(), "tv", 0.05, 0.004, 0.002, Z=np.ones((60, 1)))
    assert res.constant_start is not None and res.working_set is not None and res.converged[0]
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)


def test_a_weak_lambda_is_rejected_before_the_flow_solve(monkeypatch):
    import s3r.solver.constant_start as cs

    coords, X, y = compositional_problem(seed=7)
    K = build_operator("tv", edges=knn_graph(coords, 5).edges, n_nodes=len(X)).to_scipy()
    args = (X, y[:, None], np.ones((len(X), 1)), np.ones((len(X), 1)), np.array([0.002]), np.array([0.001]), np.ones(X.shape[1]))
    assert cs.constant_start(*args, np.array([0.05]), K)["flow_ratio"][0] <= 1.0  # fused: certified by the flow

    def no_flow(*_):
        raise AssertionError("the Laplacian solve ran")

    monkeypatch.setattr(cs, "FlowSolver", no_flow)
    assert np.isinf(cs.constant_start(*args, np.array([1e-5]), K)["flow_ratio"]).all()


def test_the_compositional_check_finds_proportions_among_other_features():
    """Some columns are proportions, the rest expression (n > 8p: the check first solves on a subset of rows)."""
    from s3r.problem_data import warn_if_compositional

    rng = np.random.default_rng(7)
    n = 400
    expr = np.log1p(rng.poisson(2.0, size=(n, 6)).astype(float))
    props = rng.dirichlet(np.ones(4), size=n)
    with pytest.warns(UserWarning, match="contrasts"):
        assert warn_if_compositional(np.c_[expr, props], True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_compositional(np.c_[expr, props[:, :3]], True)  # three of four shares: no longer spans 1
        assert not warn_if_compositional(expr, True)


def test_flow_solver_is_factorised_once_per_graph_and_large_factors_are_not_kept(monkeypatch):
    """A fold job asks for the same graph's flows ~70 times: one factorisation serves them (same flows as a fresh
    one); another graph replaces it; a factor over FLOW_CACHE_BYTES is built every time, never kept."""
    import s3r.solver.constant_start as cs

    rng = np.random.default_rng(3)
    coords = rng.uniform(size=(120, 2))
    K = build_operator("tv", edges=knn_graph(coords, 6).edges, n_nodes=120).to_scipy()
    D = rng.normal(size=(120, 3))
    first = cs.flow_solver(K)
    assert cs.flow_solver(K.copy()) is first  # the same content, another object
    np.testing.assert_allclose(first(D), cs.FlowSolver(K)(D), rtol=1e-12, atol=1e-12)
    other = build_operator("tv", edges=knn_graph(coords, 4).edges, n_nodes=120).to_scipy()
    assert cs.flow_solver(other) is not first and cs.flow_solver(K) is not first  # one entry: K was factorised again
    monkeypatch.setattr(cs, "FLOW_CACHE_BYTES", 0)
    big = cs.flow_solver(other)
    assert cs.flow_solver(other) is not big  # not kept
