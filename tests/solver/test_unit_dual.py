"""The batched PDHG holds the tv dual in units of each problem's λ (one scalar clip for the whole batch) and folds the
per-edge dual step into one sparse product: a batch mixing λ = 0 (no smoothing) with small and large λ must give
each problem its own optimum, and the dual it returns must be in the dual's own units (|U| ≤ λ, reaching λ)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s3r.solver.datafit import SquaredLoss
from s3r.solver.penalties import GraphL1, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual

from test_batch_exit import _problem, _t
from test_solver import cvxpy_optimum

LAM = [0.0, 0.01, 0.1]
ALPHA = [0.01, 0.005, 0.01]
BETA = [0.01, 0.002, 0.005]


def _solve(X, y, K, idx):
    n, p = X.shape
    B = len(idx)
    pick = lambda v: _t(np.asarray(v)[idx])  # noqa: E731
    fit = SquaredLoss(_t(X), _t(np.repeat(y[:, None], B, 1)), torch.ones((n, B), dtype=torch.float64), None)
    pen = SparseGroupLasso(pick(ALPHA), pick(BETA), torch.ones(p, dtype=torch.float64), n, torch.ones((n, B), dtype=torch.float64))
    return primal_dual(fit, pen, GraphL1(pick(LAM)), K, torch.zeros((n, B, p), dtype=torch.float64), None, tol=1e-7, max_iter=20_000)


def test_a_batch_mixing_no_smoothing_with_small_and_large_lambda_gives_each_problem_its_optimum():
    X, y, _, K, graph = _problem("tv")
    res = _solve(X, y, K, [0, 1, 2])
    assert res.converged.all()
    for b, lam in enumerate(LAM):
        best = cvxpy_optimum(X, y, graph.incidence(), "tv", lam, ALPHA[b], BETA[b])
        assert res.objective[b] == pytest.approx(best, rel=1e-4)
        alone = _solve(X, y, K, [b])
        assert np.allclose(res.W[:, b].numpy(), alone.W[:, 0].numpy(), atol=1e-4 * max(1.0, float(alone.W.abs().max())))
        U = res.dual[:, b].abs()
        if lam == 0:
            assert float(U.max()) == 0.0  # no smoothing term: its dual stays at zero
        else:  # in λ's units again: inside [−λ, λ] and at the bound on the edges a jump crosses
            assert float(U.max()) <= lam * (1 + 1e-12)
            assert float(U.max()) >= lam * (1 - 1e-9)


def test_a_warm_dual_given_in_its_own_units_is_taken_as_it_is():
    """The dual handed back, passed in again, restarts the solve at the optimum (no rescaling lost on the way in)."""
    X, y, _, K, _ = _problem("tv")
    n, p = X.shape
    first = _solve(X, y, K, [1, 2])
    B = 2
    fit = SquaredLoss(_t(X), _t(np.repeat(y[:, None], B, 1)), torch.ones((n, B), dtype=torch.float64), None)
    pen = SparseGroupLasso(_t(ALPHA[1:]), _t(BETA[1:]), torch.ones(p, dtype=torch.float64), n, torch.ones((n, B), dtype=torch.float64))
    again = primal_dual(fit, pen, GraphL1(_t(LAM[1:])), K, first.W.clone(), None, v0=first.data_dual, U0=first.dual,
                        tau0=torch.as_tensor(first.step), tol=1e-7, max_iter=20_000)
    assert again.converged.all()
    assert int(np.max(again.iterations)) <= 30  # certified within the first residual checks (a dual off by λ: > 100)
    assert np.allclose(again.objective, first.objective, rtol=1e-7)
