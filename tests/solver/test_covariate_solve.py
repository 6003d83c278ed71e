"""The covariates' weighted normal equations, solved in one place for the dual prox and the certificates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s3r.solver.certificates import covariate_optimum
from s3r.solver.datafit import SquaredLoss, covariate_solve


def _case(q, seed=0, n=40, B=3):
    rng = np.random.default_rng(seed)
    Z = np.hstack([np.ones((n, 1)), rng.normal(size=(n, q - 1))])
    w = rng.uniform(0.1, 2.0, size=(n, B))
    w[: n // 4, 0] = 0.0  # a held-out quarter in the first problem
    return Z, w, rng.normal(size=(n, B))


@pytest.mark.parametrize("q", [1, 3])
def test_the_solve_is_weighted_least_squares_per_problem(q):
    Z, w, r = _case(q)
    got = covariate_solve(torch.as_tensor(Z), torch.as_tensor(w), torch.as_tensor(r)).numpy()
    for b in range(w.shape[1]):
        s = np.sqrt(w[:, b])
        want = np.linalg.lstsq(Z * s[:, None], r[:, b] * s, rcond=None)[0]
        np.testing.assert_allclose(got[b], want, rtol=1e-10, atol=1e-12)


def test_a_covariate_no_weighted_spot_sees_stays_at_zero():
    Z, w, r = _case(1)
    w[:, 1] = 0.0
    got = covariate_solve(torch.as_tensor(Z), torch.as_tensor(w), torch.as_tensor(r))
    assert torch.isfinite(got).all() and float(got[1, 0]) == 0.0


@pytest.mark.parametrize("q", [1, 3])
def test_the_eliminated_dual_prox_keeps_the_constraint_and_its_multiplier_is_the_optimum(q):
    """v = prox(a) has Zᵀv = 0 for every problem, and at a = σ(v + M W) with v the fit's gradient the multiplier
    is the covariate optimum that the certificates compute (the same normal equations)."""
    Z, w, r = _case(q, seed=1)
    n, B = w.shape
    rng = np.random.default_rng(2)
    X = torch.as_tensor(rng.normal(size=(n, 4)))
    fit = SquaredLoss(X, torch.as_tensor(r), torch.as_tensor(w), torch.as_tensor(Z))
    sigma = torch.as_tensor(rng.uniform(0.5, 2.0, size=(n, 1)))
    v, _ = fit.dual_prox_eliminated(torch.as_tensor(rng.normal(size=(n, B))), sigma)
    assert float((torch.as_tensor(Z).T @ v).abs().max()) < 1e-10 * float(v.abs().sum())  # up to the 1e-12 ridge
    pred = torch.as_tensor(rng.normal(size=(n, B)))  # M W at some W
    gamma = covariate_optimum(fit, pred)
    grad = 2 * fit.c * (pred + torch.as_tensor(Z) @ gamma.T - fit.y)  # the fit's gradient there: the fixed point
    v_fix, g_fix = fit.dual_prox_eliminated(grad + sigma * pred, sigma)
    assert torch.allclose(v_fix, grad, rtol=0, atol=1e-12) and torch.allclose(g_fix, gamma, rtol=0, atol=1e-10)
