"""Solving on spots renumbered for locality gives the caller's answer in the caller's order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import s3r.solver.batch as batch_mod
from s3r.graph import knn_graph
from s3r.solver import build_operator, solve_batch

from test_solver import cvxpy_optimum
from test_working_set import wide_problem


def test_the_locality_order_is_a_bandwidth_reducing_renumbering_of_the_same_graph():
    rng = np.random.default_rng(0)
    coords = rng.uniform(size=(400, 2))
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, edge_weights=graph.weights, n_nodes=400)
    order, rows, new = op.locality_order()
    assert new.ordered and not op.ordered and new.locality_order is not None
    assert sorted(order.tolist()) == list(range(400)) and sorted(rows.tolist()) == list(range(graph.n_edges))
    # the same operator: K' (P W) = R (K W) for the node permutation P and the edge permutation R
    W = torch.as_tensor(rng.normal(size=(400, 2, 3)))
    np.testing.assert_allclose(new.forward(W[order]).numpy(), op.forward(W)[rows].numpy(), atol=1e-12)
    # neighbours stored near each other: the edges' index spread shrinks by an order of magnitude
    before = np.abs(np.diff(np.asarray(graph.edges), axis=1)).mean()
    E = torch.stack([new._src, new._dst], 1).numpy()
    assert np.abs(np.diff(E, axis=1)).mean() < 0.2 * before


@pytest.mark.parametrize("variant", ["plain", "all"])
def test_a_reordered_solve_matches_cvxpy_and_returns_state_in_the_callers_order(variant, monkeypatch):
    coords, X, y = wide_problem(seed=3)
    n, p = X.shape
    rng = np.random.default_rng(1)
    graph = knn_graph(coords, 5)
    weights, free, Z = None, np.ones(n, dtype=bool), None
    if variant == "all":
        weights = rng.uniform(0.2, 1.0, size=n)
        free[rng.choice(n, 4, replace=False)] = False
        Z = rng.normal(size=(n, 2))
        y = y + Z @ np.array([1.0, -2.0])
    kw = dict(smooth="tv", lambda_smooth=0.05, alpha=0.02, beta=0.03, weights=weights, free_rows=free.astype(float),
              covariates=Z, tol=1e-7, max_iter=100_000, device="cpu")
    op = build_operator("tv", edges=graph.edges, edge_weights=graph.weights, n_nodes=n)
    plain = solve_batch(X, y, operator=op, **kw)  # below REORDER_MIN_SPOTS: the caller's order
    monkeypatch.setattr(batch_mod, "REORDER_MIN_SPOTS", 0)
    res = solve_batch(X, y, operator=op, **kw)
    assert res.converged[0]
    expected = cvxpy_optimum(X, y, graph.incidence(), "tv", 0.05, 0.02, 0.03, weights=weights, free=free, Z=Z)
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)
    scale = float(plain.W.abs().max())
    np.testing.assert_allclose(res.W.numpy(), plain.W.numpy(), atol=1e-3 * scale)  # spot rows in the caller's order
    np.testing.assert_allclose(res.data_dual.numpy(), plain.data_dual.numpy(), atol=1e-3 * float(plain.data_dual.abs().max()))
    # the returned state is a warm start in the caller's order: a re-solve from it is done at its first residual check
    again = solve_batch(X, y, operator=op, W0=res.W, gamma0=res.gamma, dual0=res.dual, data_dual0=res.data_dual, step0=res.step,
                        **{**kw, "tol": 1e-6})
    assert again.converged[0] and again.iterations[0] <= 20
