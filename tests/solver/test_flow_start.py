"""The edge dual of a primal warm start (s3r.solver.flow_start): the least-squares flow of W's optimality conditions,
clipped into the box — exact flows on every connected part, the closed form for quadratic smoothing, and a restart
from a solved map that the flow holds in place where a zero dual lets it drift."""

from __future__ import annotations

import numpy as np
import torch

from s3r.graph import knn_graph
from s3r.solver.datafit import SquaredLoss
from s3r.solver.flow_start import FlowSolver, warm_flow_dual
from s3r.solver.penalties import GraphL1, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual

from test_batch_exit import _problem, _t

LAM, ALPHA, BETA = 0.5, 0.004, 0.002  # the map fuses into one piece per feature (the constant model)


def test_the_flow_carries_each_parts_divergence_with_the_least_norm():
    rng = np.random.default_rng(1)
    coords = np.vstack([rng.uniform(size=(50, 2)), rng.uniform(size=(30, 2)) + 10.0])  # two far clusters: two parts
    K = knn_graph(coords, 5).incidence()
    flows = FlowSolver(K)
    assert flows.n_components == 2
    D = rng.normal(size=(80, 3))
    U = flows(D)
    parts = [flows.labels == c for c in range(2)]
    expected = D.copy()
    for rows in parts:
        expected[rows] -= expected[rows].mean(axis=0)
    assert np.allclose(K.T @ U, expected, atol=1e-9)  # the divergence asked for, part by part
    L = (K.T @ K).toarray()
    assert np.allclose(U, K @ (np.linalg.pinv(L) @ expected), atol=1e-9)  # and the smallest such flow


def test_quadratic_smoothing_gets_its_dual_in_closed_form():
    X, y, _, K, graph = _problem("quadratic")
    Ks = graph.incidence()
    W = np.random.default_rng(0).normal(size=(X.shape[0], 2, X.shape[1]))
    U = warm_flow_dual(X, W, np.zeros((X.shape[0], 2)), np.zeros(2), np.zeros(2), np.array([0.3, 0.0]), Ks, smooth="quadratic")
    assert np.allclose(U[:, 0], 0.6 * (Ks @ W[:, 0]))
    assert np.allclose(U[:, 1], 0.0)


def _restart(X, y, K, W0, v0, U0, max_iter):
    n, p = X.shape
    fit = SquaredLoss(_t(X), _t(y[:, None]), torch.ones((n, 1), dtype=torch.float64), None)
    pen = SparseGroupLasso(_t([ALPHA]), _t([BETA]), torch.ones(p, dtype=torch.float64), n, torch.ones((n, 1), dtype=torch.float64))
    return primal_dual(fit, pen, GraphL1(_t([LAM])), K, W0.clone(), None, v0=v0.clone(),
                       U0=None if U0 is None else torch.as_tensor(U0), tol=1e-7, max_iter=max_iter)


def test_a_solved_map_restarted_with_its_flow_dual_stays_solved():
    """A fused optimum restarted from its W and data dual: the flow dual certifies it at the first checks; a zero
    dual lets the map unfuse and fuse again (the tuning's rounds 1–2 warm starts before session 16: 2,070 iterations).
    Where the map has many pieces the flow is only a start (λ = 0.2: 1,070 against 1,410; 0.05: equal)."""
    X, y, _, K, graph = _problem("tv")
    n = X.shape[0]
    best = _restart(X, y, K, torch.zeros((n, 1, X.shape[1]), dtype=torch.float64), torch.zeros((n, 1), dtype=torch.float64), None, 50_000)
    assert best.converged.all()
    U = warm_flow_dual(X, best.W.numpy(), best.data_dual.numpy(), np.array([ALPHA]), np.array([BETA]), np.array([LAM]),
                       graph.incidence())
    assert np.abs(U).max() <= LAM * (1 + 1e-12)
    with_flow = _restart(X, y, K, best.W, best.data_dual, U, 50_000)
    without = _restart(X, y, K, best.W, best.data_dual, None, 50_000)
    assert with_flow.converged.all() and without.converged.all()
    assert abs(with_flow.objective[0] - best.objective[0]) <= 1e-6 * abs(best.objective[0])
    assert int(with_flow.iterations[0]) <= 30 < 300 <= int(without.iterations[0]), (with_flow.iterations, without.iterations)
