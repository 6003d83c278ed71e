"""Per-problem exit from the batched PDHG loop: a converged problem leaves the batch with the iterate it had when it
converged, and the problems left behind follow the iterates the full batch would have given them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s3r.graph import knn_graph
from s3r.solver import build_operator, solve_batch
from s3r.solver.datafit import SquaredLoss
from s3r.solver.penalties import GraphL1, GraphQuadratic, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual

from test_solver import cvxpy_optimum, small_problem

# λ over three decades and the sparsity weights around their thresholds: with tv these converge after 140 to 480
# iterations at the tolerance below, the last after ~5,000 (not within MAX_ITER: it stays in the loop to the end)
LAM = [0.001, 0.01, 0.03, 0.1, 0.2]
ALPHA = [0.02, 0.005, 0.01, 0.002, 0.01]
BETA = [0.01, 0.002, 0.0, 0.01, 0.01]
TOL = 1e-7
MAX_ITER = 1500


@pytest.fixture(autouse=True)
def no_step_floor(monkeypatch):
    """The batch spreads because the step balancing runs away on its last problem (λ 0.2: 4,990 iterations; 400 with
    the step floor, s3r.solver.primal_dual.STEP_FLOOR): the exit is tested on that spread batch, without the floor."""
    import s3r.solver.primal_dual as pd

    monkeypatch.setattr(pd, "STEP_FLOOR", 0.0)


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _problem(smooth="tv", covariates=False, seed=3, n=60, p=5):
    coords, X, y = small_problem(seed=seed, n=n, p=p)
    rng = np.random.default_rng(seed)
    Z = np.c_[np.ones(n), rng.normal(size=n)] if covariates else None
    if Z is not None:
        y = y + Z @ np.array([0.5, -1.0])
    graph = knn_graph(coords, 5)
    K = build_operator(smooth, edges=graph.edges, edge_weights=graph.weights, n_nodes=n)
    return X, y, Z, K, graph


def _solve(X, y, Z, K, smooth, idx, *, exit_converged, max_iter=MAX_ITER):
    """primal_dual on the problems ``idx`` of LAM/ALPHA/BETA, one batch."""
    n, p = X.shape
    B = len(idx)
    pick = lambda v: _t(np.asarray(v)[idx])  # noqa: E731
    fit = SquaredLoss(_t(X), _t(np.repeat(y[:, None], B, 1)), torch.ones((n, B), dtype=torch.float64), None if Z is None else _t(Z))
    pen = SparseGroupLasso(pick(ALPHA), pick(BETA), torch.ones(p, dtype=torch.float64), n, torch.ones((n, B), dtype=torch.float64))
    term = GraphQuadratic(pick(LAM)) if smooth == "quadratic" else GraphL1(pick(LAM))
    gamma0 = None if Z is None else torch.zeros((B, Z.shape[1]), dtype=torch.float64)
    return primal_dual(fit, pen, term, K, torch.zeros((n, B, p), dtype=torch.float64), gamma0, tol=TOL, max_iter=max_iter,
                       exit_converged=exit_converged)


@pytest.mark.parametrize("smooth,covariates", [("tv", False), ("tv", True), ("quadratic", False)])
def test_a_problem_leaves_with_the_iterate_it_had_in_the_old_batch(smooth, covariates):
    X, y, Z, K, _ = _problem(smooth, covariates)
    idx = list(range(len(LAM)))
    new = _solve(X, y, Z, K, smooth, idx, exit_converged=True)
    old = _solve(X, y, Z, K, smooth, idx, exit_converged=False)
    its = np.asarray(new.iterations)
    assert np.array_equal(new.converged, old.converged) and new.converged.sum() >= 4
    assert np.array_equal(its, old.iterations)  # every problem converges at the same iteration as in the full batch
    assert its.max() > its.min()
    if smooth == "tv":
        assert its.max() > 5 * its.min()  # the batch spreads: the early ones left long before the last
    for b in range(len(idx)):
        # the old loop stopped at the iteration problem b converged returns b's iterate there (its state is not
        # touched by the step balancing of that check): the exit must return that iterate
        ref = old if its[b] == its.max() else _solve(X, y, Z, K, smooth, idx, exit_converged=False, max_iter=int(its[b]))
        scale = max(float(ref.W[:, b].abs().max()), 1e-12)
        assert float((new.W[:, b] - ref.W[:, b]).abs().max()) <= 1e-9 * scale
        assert float((new.data_dual[:, b] - ref.data_dual[:, b]).abs().max()) <= 1e-9 * float(ref.data_dual[:, b].abs().max())
        assert float((new.dual[:, b] - ref.dual[:, b]).abs().max()) <= 1e-9 * max(LAM[b], float(ref.dual[:, b].abs().max()))
        if Z is not None:
            assert np.allclose(new.gamma[b].numpy(), ref.gamma[b].numpy(), rtol=1e-9, atol=1e-12)
        assert new.step[b] == pytest.approx(ref.step[b], rel=1e-12)
        assert new.objective[b] == pytest.approx(ref.objective[b], rel=1e-10)
        assert new.primal_residual[b] == pytest.approx(ref.primal_residual[b], rel=1e-6)
        if new.converged[b]:  # the residuals reported are those that certified it
            assert new.primal_residual[b] <= TOL and new.dual_residual[b] <= TOL


def test_each_problem_of_a_spread_batch_matches_its_solve_alone_and_cvxpy():
    X, y, Z, K, graph = _problem("tv", covariates=False)
    idx = list(range(len(LAM) - 1))  # the ones that converge within MAX_ITER
    res = _solve(X, y, Z, K, "tv", idx, exit_converged=True)
    assert res.converged.all()
    for b in idx:
        alone = _solve(X, y, Z, K, "tv", [b], exit_converged=True)
        assert alone.converged.all()
        assert res.objective[b] == pytest.approx(alone.objective[0], rel=1e-6)
        assert np.allclose(res.W[:, b].numpy(), alone.W[:, 0].numpy(), atol=1e-3 * max(1.0, float(alone.W.abs().max())))
        best = cvxpy_optimum(X, y, graph.incidence(), "tv", LAM[b], ALPHA[b], BETA[b])
        assert res.objective[b] == pytest.approx(best, rel=1e-4)


def test_the_trace_reports_a_problem_that_left_as_it_left():
    X, y, Z, K, _ = _problem("tv")
    idx = list(range(len(LAM)))
    res = _solve(X, y, Z, K, "tv", idx, exit_converged=True)
    its = np.asarray(res.iterations)
    first = int(np.argmin(its))
    later = [e for e in res.trace if e["iteration"] > its[first]]
    assert later  # entries after it left still list every problem of the batch
    for e in later:
        assert len(e["objective"]) == len(idx)
        assert e["objective"][first] == pytest.approx(res.objective[first], rel=1e-12)
        assert e["primal_residual"][first] <= TOL


def test_solve_batch_with_working_sets_gives_the_same_answers_with_and_without_the_exit(monkeypatch):
    import s3r.solver.primal_dual as pd

    # the working set's restricted solves are warm-started from what the last one returned, which for a problem that
    # left early is its iterate at convergence (not the later one the old loop returned): same optima, other paths
    X, y, Z, K, graph = _problem("tv", n=60, p=12)
    kwargs = dict(smooth="tv", operator=K, lambda_smooth=LAM[:3], alpha=ALPHA[:3], beta=BETA[:3], tol=TOL,
                  max_iter=MAX_ITER, working_set=True, prune_zeros=False)
    out = {}
    for flag in (False, True):
        monkeypatch.setattr(pd, "EXIT", flag)
        out[flag] = solve_batch(X, np.repeat(y[:, None], 3, 1), **kwargs)
    assert out[True].converged.all() and out[False].converged.all()
    assert out[True].working_set["size"] < 12  # some features certified at zero: the outer loop ran
    assert np.allclose(out[True].objective, out[False].objective, rtol=1e-6)
    for b in range(3):
        best = cvxpy_optimum(X, y, graph.incidence(), "tv", LAM[b], ALPHA[b], BETA[b])
        assert out[True].objective[b] == pytest.approx(best, rel=1e-4)
