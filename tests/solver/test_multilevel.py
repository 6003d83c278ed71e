"""Coarse-to-fine: the aggregated levels are the exact restricted problem, and refining them gives the same optimum."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import s3r.solver.multilevel as ml
from s3r.graph import knn_graph
from s3r.solver import build_operator, solve_batch
from s3r.solver.datafit import SquaredLoss
from s3r.solver.penalties import GraphL1, GraphQuadratic, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual
from s3r.solver.working_set import solve_working_set

from test_solver import cvxpy_optimum
from test_working_set import wide_problem


def spot_map(levels, n):
    """(n,) aggregate of every spot at the coarsest level, and the 0/1 matrix P (n × n_c)."""
    agg = np.arange(n)
    for lev in levels:
        agg = lev.agg[agg]
    return agg, sp.csr_matrix((np.ones(n), (np.arange(n), agg)), shape=(n, int(agg.max()) + 1))


@pytest.mark.parametrize("smooth", ["tv", "quadratic"])
def test_levels_keep_the_graph_term_and_the_dual_balance(smooth, monkeypatch):
    monkeypatch.setattr(ml, "COARSEST", 10)
    monkeypatch.setattr(ml, "LEVEL_RATIO", 2.5)
    coords, _, _ = wide_problem(seed=1, n=80)
    graph = knn_graph(coords, 5)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=graph.n_edges)
    K = build_operator(smooth, edges=graph.edges, edge_weights=w, n_nodes=80)
    levels = ml.build_levels(graph.edges, K._w.view(-1).numpy(), 80, quadratic=smooth == "quadratic")
    assert len(levels) >= 2 and levels[-1].size.size <= 10 and levels[-1].size.sum() == 80
    agg, P = spot_map(levels, 80)
    Wc = np.random.default_rng(2).normal(size=(P.shape[1], 3))
    fine = K.to_scipy() @ (P @ Wc)
    Kc = ml.coarse_operator(levels[-1], "cpu", torch.float64).to_scipy() @ (np.sqrt(levels[-1].size)[:, None] * Wc)
    if smooth == "tv":
        assert np.isclose(np.abs(fine).sum(), np.abs(Kc).sum())
    else:
        assert np.isclose((fine**2).sum(), (Kc**2).sum())
    # the prolongated dual keeps Pᵀ Kᵀ U = K_cᵀ U_c level by level (so the coarse optimality carries over)
    for li in range(len(levels) - 1, -1, -1):
        Uc = torch.as_tensor(np.random.default_rng(li).normal(size=(levels[li].edges.shape[0], 1, 3)))
        res = type("R", (), {"W": torch.zeros((levels[li].size.size, 1, 3), dtype=torch.float64), "dual": Uc})()
        finer_size = np.ones(80) if li == 0 else levels[li - 1].size
        finer_w = K._w.view(-1).numpy() if li == 0 else levels[li - 1].weights
        _, Uf = ml._prolong(res, finer_size, levels[li], finer_w, smooth == "quadratic")
        Kf = K.to_scipy() if li == 0 else ml.coarse_operator(levels[li - 1], "cpu", torch.float64).to_scipy() @ sp.diags(np.sqrt(finer_size))
        Kcoarse = ml.coarse_operator(levels[li], "cpu", torch.float64).to_scipy() @ sp.diags(np.sqrt(levels[li].size))
        Pl = sp.csr_matrix((np.ones(levels[li].agg.size), (np.arange(levels[li].agg.size), levels[li].agg)))
        np.testing.assert_allclose(Pl.T @ (Kf.T @ Uf[:, 0].numpy()), Kcoarse.T @ Uc[:, 0].numpy(), atol=1e-10)


@pytest.mark.parametrize("smooth", ["tv", "quadratic"])
@pytest.mark.parametrize("variant", ["plain", "all"])
def test_coarse_level_is_the_restricted_problem(smooth, variant, monkeypatch):
    """The aggregated level solved in u = √|a| W_c has the optimum of min over W = P W_c (cvxpy)."""
    monkeypatch.setattr(ml, "COARSEST", 15)
    monkeypatch.setattr(ml, "LEVEL_RATIO", 2.5)
    coords, X, y = wide_problem(seed=4, n=60, p=8, informative=4)
    n, p = X.shape
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.2, 1.0, size=n) if variant == "all" else np.ones(n)
    Z = rng.normal(size=(n, 2)) if variant == "all" else None
    graph = knn_graph(coords, 5)
    K = build_operator(smooth, edges=graph.edges, n_nodes=n)
    levels = ml.build_levels(graph.edges, K._w.view(-1).numpy(), n, quadratic=smooth == "quadratic")
    agg, P = spot_map(levels, n)
    lam, alpha, beta = 0.02, 0.005, 0.005  # small enough that the restriction binds
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    datafit = SquaredLoss(t(X), t(y).view(n, 1), t(weights).view(n, 1), None if Z is None else t(Z))
    size = t(levels[-1].size)
    fit = ml.AggregateLoss.of(datafit, torch.as_tensor(agg), size)
    pen = SparseGroupLasso(t([alpha]), t([beta]), torch.ones(p, dtype=torch.float64), n, torch.ones((size.numel(), 1), dtype=torch.float64),
                           row_weight=torch.sqrt(size))
    term = (GraphQuadratic if smooth == "quadratic" else GraphL1)(t([lam]))
    gamma0 = None if Z is None else torch.zeros((1, 2), dtype=torch.float64)
    res = solve_working_set(fit, pen, term, ml.coarse_operator(levels[-1], "cpu", torch.float64), torch.zeros((size.numel(), 1, p), dtype=torch.float64),
                            gamma0, inner=primal_dual, tol=1e-8, max_iter=200_000)
    assert res.converged[0]
    expected = cvxpy_optimum(X, y, graph.incidence(), smooth, lam, alpha, beta, weights=weights, Z=Z, P=P)
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)
    full = cvxpy_optimum(X, y, graph.incidence(), smooth, lam, alpha, beta, weights=weights, Z=Z)
    assert full < expected - 1e-3 * abs(expected), (full, expected)  # the restriction binds: W = P W_c costs


@pytest.mark.parametrize("smooth", ["tv", "quadratic"])
@pytest.mark.parametrize("variant", ["plain", "all"])
def test_coarse_to_fine_reaches_the_plain_optimum(smooth, variant, monkeypatch):
    monkeypatch.setattr(ml, "COARSEST", 8)
    monkeypatch.setattr(ml, "LEVEL_RATIO", 2.5)
    coords, X, y = wide_problem(seed=3)
    n, p = X.shape
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.2, 1.0, size=n) if variant == "all" else None
    Z = None
    if variant == "all":
        Z = rng.normal(size=(n, 2))
        y = y + Z @ np.array([1.0, -2.0])
    graph = knn_graph(coords, 5)
    op = build_operator(smooth, edges=graph.edges, n_nodes=n)
    lam, alpha = 0.05, 0.02
    beta = 0.12 if smooth == "quadratic" else 0.03
    kw = dict(smooth=smooth, operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, weights=weights, covariates=Z, tol=1e-7,
              max_iter=100_000, device="cpu")
    res = solve_batch(X, y, coarsen=True, **kw)
    info = res.multilevel
    assert res.converged[0] and res.working_set["check_passed"]
    assert len(info["levels"]) >= 2 and info["levels"][0]["aggregates"] < info["levels"][-1]["aggregates"] < n
    assert all(lv["working_set"] <= p for lv in info["levels"])
    if smooth == "tv":  # (with the quadratic term and covariates every coarse level is W = 0, certified without a step)
        assert sum(lv["iterations"][0] for lv in info["levels"]) > 0
    assert info["fine_iterations"] == res.iterations.tolist()
    expected = cvxpy_optimum(X, y, graph.incidence(), smooth, lam, alpha, beta, weights=weights, Z=Z)
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)
    plain = solve_batch(X, y, coarsen=False, **kw)
    assert plain.multilevel is None
    assert abs(res.objective[0] - plain.objective[0]) <= 1e-4 * abs(plain.objective[0])
    scale = np.abs(plain.W.numpy()).max()
    np.testing.assert_allclose(res.W.numpy(), plain.W.numpy(), atol=1e-3 * scale)


def test_coarsening_is_used_only_where_it_is_exact_and_cold(monkeypatch):
    monkeypatch.setattr(ml, "COARSEST", 12)
    coords, X, y = wide_problem(seed=3)
    n = X.shape[0]
    graph = knn_graph(coords, 5)
    tv = build_operator("tv", edges=graph.edges, n_nodes=n)
    term, free = GraphL1(torch.ones(1)), torch.ones((n, 1))
    assert ml.coarse_levels(True, tv, term, free, cold=True)
    assert not ml.coarse_levels(True, tv, term, free, cold=False)  # warm starts refine what they have
    masked = free.clone()
    masked[3] = 0
    assert not ml.coarse_levels(True, tv, term, masked, cold=True)  # a fixed row cannot share its aggregate's value
    assert not ml.coarse_levels("auto", tv, term, free, cold=True)  # below AUTO_MIN_SPOTS
    monkeypatch.setattr(ml, "AUTO_MIN_SPOTS", 10)
    assert ml.coarse_levels("auto", tv, term, free, cold=True)
    monkeypatch.setattr(ml, "AUTO_MAX_SPOTS", 50)
    assert not ml.coarse_levels("auto", tv, term, free, cold=True)  # above the measured range
    assert ml.coarse_levels(True, tv, term, free, cold=True)
    general = build_operator("graph_l1", matrix=graph.incidence())
    assert not ml.coarse_levels(True, general, term, free, cold=True)  # not an edge incidence


def test_batched_coarse_to_fine_matches_separate_plain_solves(monkeypatch):
    """Problems of a batch (folds' weights, λ) share the levels and each reaches its own optimum."""
    monkeypatch.setattr(ml, "COARSEST", 12)
    coords, X, y = wide_problem(seed=5)
    n = X.shape[0]
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, n_nodes=n)
    weights = np.stack([np.ones(n), np.random.default_rng(0).uniform(0.2, 1.0, size=n)], axis=1)
    lam = np.array([0.05, 0.02])
    kw = dict(smooth="tv", operator=op, alpha=0.02, beta=0.03, tol=1e-7, max_iter=100_000, device="cpu")
    batch = solve_batch(X, np.stack([y, y], axis=1), weights=weights, lambda_smooth=lam, coarsen=True, **kw)
    assert batch.multilevel is not None and batch.converged.all()
    for b in range(2):
        alone = solve_batch(X, y, weights=weights[:, b], lambda_smooth=lam[b], coarsen=False, **kw)
        assert abs(batch.objective[b] - alone.objective[0]) <= 1e-4 * abs(alone.objective[0])


def test_estimator_reports_the_levels_and_matches_cvxpy(monkeypatch):
    from s3r import S3R

    from test_solver import small_problem

    monkeypatch.setattr(ml, "COARSEST", 10)
    monkeypatch.setattr(ml, "AUTO_MIN_SPOTS", 30)  # the default "auto" switches the levels on for this small problem
    coords, X, y = small_problem(seed=5, n=60)
    graph = knn_graph(coords, 5)
    model = S3R("tv", 0.05, 0.02, 0.01, tol=1e-7, scaling="reference", device="cpu").fit(X, y, coords, spot_graph=graph)
    levels = model.report_["coarse_levels"]
    assert levels and all(lv["aggregates"] < 60 and lv["iterations"] >= 0 for lv in levels)
    expected = cvxpy_optimum(X, y, graph.incidence(), "tv", 0.05, 0.02, 0.01)
    assert abs(model.report_["objective"] - expected) <= 1e-4 * abs(expected)
