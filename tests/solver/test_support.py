"""Numerical zeros: a column left at noise level is zeroed only when the optimality conditions prove it zero."""

from __future__ import annotations

import numpy as np
import torch

from s3r.solver import solve_batch
from s3r.solver.datafit import SquaredLoss
from s3r.solver.penalties import GraphL1, SparseGroupLasso
from s3r.solver.support import PRUNE_RTOL, prune_numerical_zeros

from test_working_set import operator_for, wide_problem


def _problem():
    coords, X, y = wide_problem(seed=3)
    op, _ = operator_for("tv", coords)
    lam, alpha, beta = 0.05, 0.02, 0.03
    res = solve_batch(X, y, smooth="tv", operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, tol=1e-8,
                      max_iter=200_000, device="cpu", dtype="float64", working_set=False)
    assert res.converged[0]
    n, p = X.shape
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
    datafit = SquaredLoss(t(X), t(y).view(n, 1), torch.ones(n, 1, dtype=torch.float64), None)
    penalty = SparseGroupLasso(t([alpha]), t([beta]), torch.ones(p, dtype=torch.float64), n, torch.ones(n, 1, dtype=torch.float64))
    return datafit, penalty, GraphL1(t([lam])), op, res.W.clone()


def test_a_noise_level_column_that_is_zero_at_the_optimum_is_zeroed():
    datafit, penalty, smooth, K, W = _problem()
    norms = torch.linalg.vector_norm(W[:, 0], dim=0)
    zero = int(torch.nonzero(norms == 0)[0])
    W[:, 0, zero] = 1e-9 * norms.max() / W.shape[0] * torch.randn(W.shape[0], dtype=W.dtype)
    pruned, zeroed = prune_numerical_zeros(datafit, penalty, smooth, K, W)
    assert zeroed == [[zero]]
    assert bool((pruned[:, 0, zero] == 0).all())
    others = [j for j in range(W.shape[2]) if j != zero]
    assert torch.equal(pruned[:, :, others], W[:, :, others])  # nothing else touched


def test_a_shrunken_column_the_fit_needs_is_kept():
    datafit, penalty, smooth, K, W = _problem()
    norms = torch.linalg.vector_norm(W[:, 0], dim=0)
    strong = int(torch.argmax(norms))
    second = int(torch.argsort(norms, descending=True)[1])
    W[:, 0, second] *= 0.1 * PRUNE_RTOL * norms[strong] / norms[second]  # now below the candidate threshold
    pruned, zeroed = prune_numerical_zeros(datafit, penalty, smooth, K, W)
    assert zeroed == [[]]  # its gradient at zero proves it non-zero: the check refuses, the column stays
    assert torch.equal(pruned, W)


def test_solve_batch_reports_the_zeroed_columns_and_leaves_none_at_noise_level():
    coords, X, y = wide_problem(seed=3)
    op, _ = operator_for("tv", coords)
    res = solve_batch(X, y, smooth="tv", operator=op, lambda_smooth=0.05, alpha=0.02, beta=0.03, tol=1e-5, device="cpu",
                      dtype="float64", working_set=False)
    norms = torch.linalg.vector_norm(res.W[:, 0], dim=0)
    assert res.zeroed is not None and len(res.zeroed) == 1
    tiny = (norms > 0) & (norms <= PRUNE_RTOL * norms.max())
    assert not bool(tiny.any())


def test_count_family_fits_leave_no_noise_level_column():
    """Poisson with an intercept: the same check with the GLM gradient (covariates profiled out)."""
    from s3r.solver.glm_batch import solve_glm_batch

    coords, X, _ = wide_problem(seed=3)
    op, _ = operator_for("tv", coords)
    rng = np.random.default_rng(0)
    eta = 1.0 + 0.3 * (X[:, :3] * np.where(coords[:, :1] > 0.5, 1.0, -0.5)).sum(1)
    counts = rng.poisson(np.exp(eta))
    res = solve_glm_batch(X, counts, family="poisson", smooth="tv", operator=op, lambda_smooth=0.02, alpha=0.005, beta=0.01,
                          covariates=np.ones((len(counts), 1)), tol=1e-6, device="cpu")
    assert res.converged[0]
    norms = torch.linalg.vector_norm(res.W[:, 0], dim=0)
    assert len(res.zeroed[0]) > 0  # this problem's solve leaves some (measured: six at 1e-10–1e-8 of the largest)
    assert not bool(((norms > 0) & (norms <= PRUNE_RTOL * norms.max())).any())
    assert all(bool((res.W[:, 0, j] == 0).all()) for j in res.zeroed[0])
