"""Each block step against an independent solver (cvxpy) on small problems."""

import cvxpy as cp
import numpy as np
import pytest
import torch

from s3r.deconv.bstep import solve_b_step
from s3r.deconv.operators import Incidence
from s3r.deconv.xstep import negative_log_evidence, solve_x_step, solve_x_step_soft, tv_penalty
from s3r.graph import delaunay_graph


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_problem(n=30, D=3, seed=0, lam=0.3):
    rng = np.random.default_rng(seed)
    graph = delaunay_graph(rng.uniform(size=(n, 2)))
    incidence = Incidence(n, graph.edges, D, torch.device("cpu"), torch.float64)
    component_scores = rng.uniform(0.02, 1.0, size=(D, n))
    costs = lam * rng.uniform(0.2, 1.0, size=graph.n_edges)
    return graph, incidence, component_scores, costs


def cvxpy_x_step(graph, M, costs, eps, delta=0.0):
    D, n = M.shape
    X = cp.Variable((n, D))
    A = graph.incidence().toarray()
    jumps = A @ X
    evidence = cp.sum(cp.multiply(M.T, X), axis=1)
    if delta == 0:
        penalty = cp.sum(cp.multiply(costs[:, None], cp.abs(jumps)))
    else:
        stacked = cp.hstack([cp.reshape(jumps, (-1, 1), order="F"), np.sqrt(delta) * np.ones((jumps.size, 1))])
        penalty = cp.sum(cp.multiply(np.tile(costs, D), cp.norm(stacked, 2, axis=1)))
    problem = cp.Problem(cp.Minimize(-cp.sum(cp.log(evidence)) + penalty), [X >= eps, cp.sum(X, axis=1) == 1])
    problem.solve(solver=cp.CLARABEL)
    return problem.value, X.value.T


@pytest.mark.parametrize("eps", [0.0, 0.01])
def test_x_step_matches_cvxpy(eps):
    graph, incidence, M, costs = small_problem()
    expected, _ = cvxpy_x_step(graph, M, costs, eps)
    Mt, ct = torch.as_tensor(M), torch.as_tensor(costs)
    start = torch.full((3, graph.n_nodes), 1.0 / 3, dtype=torch.float64)
    result = solve_x_step(Mt, start, incidence, ct, eps, tol=1e-8, max_iter=50_000)
    assert result.converged
    value = float(negative_log_evidence(Mt, result.mixture) + tv_penalty(incidence, result.mixture, ct))
    assert abs(value - expected) <= 1e-4 * abs(expected)
    assert value >= expected - 1e-6 * abs(expected)  # feasible points cannot beat the optimum
    assert float(result.mixture.min()) >= eps - 1e-12
    torch.testing.assert_close(result.mixture.sum(dim=0), torch.ones(graph.n_nodes, dtype=torch.float64))


def test_x_step_recovers_from_high_curvature_starts_and_backtracks():
    # component 0 explains every spot badly: starting there makes the log term's curvature ~1/z² huge, and
    # starting elsewhere the local curvature underestimates what the path meets, so the estimates must move
    graph, incidence, M, costs = small_problem(seed=0, lam=1.0)
    M[0] *= 1e-3
    expected, _ = cvxpy_x_step(graph, M, costs, 1e-3)
    Mt, ct = torch.as_tensor(M), torch.as_tensor(costs)
    backtracks = 0
    for component in (0, 2):
        start = torch.zeros((3, graph.n_nodes), dtype=torch.float64)
        start[component] = 1.0
        result = solve_x_step(Mt, start, incidence, ct, 1e-3, tol=1e-8, max_iter=5_000)
        assert result.converged
        value = float(negative_log_evidence(Mt, result.mixture) + tv_penalty(incidence, result.mixture, ct))
        assert abs(value - expected) <= 1e-4 * abs(expected)
        backtracks += result.backtracks
    assert backtracks > 0


def test_soft_l1_x_step_matches_cvxpy():
    graph, incidence, M, costs = small_problem(n=20, seed=1)
    delta = 1e-3
    expected, _ = cvxpy_x_step(graph, M, costs, 0.01, delta=delta)
    start = torch.full((3, graph.n_nodes), 1.0 / 3, dtype=torch.float64)
    result = solve_x_step_soft(torch.as_tensor(M), start, incidence, torch.as_tensor(costs), 0.01, delta=delta, tol=1e-8, max_iter=50_000)
    Mt = torch.as_tensor(M)
    value = float(negative_log_evidence(Mt, result.mixture) + tv_penalty(incidence, result.mixture, torch.as_tensor(costs), delta))
    assert abs(value - expected) <= 1e-4 * abs(expected)


def test_b_step_matches_cvxpy():
    rng = np.random.default_rng(2)
    K, D, n, eps = 6, 3, 40, 0.01
    scores = rng.uniform(0.01, 1.0, size=(K, n))
    mixture = rng.dirichlet(np.ones(D), size=n).T
    B = cp.Variable((K, D))
    evidence = cp.sum(cp.multiply(mixture, B.T @ scores), axis=0)
    problem = cp.Problem(cp.Minimize(-cp.sum(cp.log(evidence)) / n), [B >= eps, cp.sum(B, axis=0) == 1])
    problem.solve(solver=cp.CLARABEL)
    start = torch.full((K, D), 1.0 / K, dtype=torch.float64)
    result = solve_b_step(torch.as_tensor(scores), torch.as_tensor(mixture), start, eps, tol=1e-8, max_iter=20_000)
    assert result.converged
    assert abs(result.value - problem.value) <= 1e-6 * abs(problem.value)
    np.testing.assert_allclose(result.point.sum(dim=0).numpy(), 1.0, atol=1e-12)
