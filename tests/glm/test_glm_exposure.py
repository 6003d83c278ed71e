"""Poisson data fit from sufficient statistics (s3r.glm.exposure): exact against the cell-by-cell formulas, and
the whole path unchanged when the direct (n × responses) route is used instead."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from s3r.glm import GLMNet
from s3r.glm.exposure import PoissonSums
from s3r.glm.families import Poisson


def _design(seed=0, n=300, k=4):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, k + 1, n)
    D = np.zeros((n, k))
    D[g > 0, g[g > 0] - 1] = 1
    rep = rng.integers(0, 2, n).astype(float)
    lib = rng.integers(20, 60, n).astype(float)  # integer library sizes: few distinct keys
    X = np.c_[D, np.log1p(lib), rep, rng.normal(size=n).round(1)]  # binary columns not all first
    off = np.log(lib)
    eta = 0.3 * X[:, :k] @ rng.normal(size=(k, 7)) + off[:, None] - 3
    Y = rng.poisson(np.exp(eta)).astype(float)
    return X, Y, off


@pytest.mark.parametrize("sparse", [False, True])
def test_value_gradient_hessian_match_cell_sums(sparse):
    X, Y, off = _design()
    n, p = X.shape
    w = np.full(n, 1 / n)
    mean, sd = X.mean(0), X.std(0)
    P = PoissonSums(X, mean, sd, w, off, sp.csr_matrix(Y) if sparse else Y, torch.float64, "cpu")
    assert P.n_classes <= 2 * 5 and P.n_keys < n  # grouped, not one row per cell
    U = torch.as_tensor(np.random.default_rng(1).normal(scale=0.3, size=(Y.shape[1], p + 1)))
    Xs = torch.as_tensor(np.c_[np.ones(n), (X - mean) / sd])
    eta = Xs @ U.T + torch.as_tensor(off)[:, None]
    Yt, wt = torch.as_tensor(Y), torch.as_tensor(w)[:, None]
    fam = Poisson()
    np.testing.assert_allclose(P.value(U).numpy(), (wt * fam.nll(Yt, eta)).sum(0).numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(P.exact(U).numpy(), (wt * fam.loss(Yt, eta)).sum(0).numpy(), rtol=1e-12, atol=1e-13)
    g, H = P.gradient_hessian(U)
    mu = torch.exp(eta)
    np.testing.assert_allclose(g.numpy(), ((wt * (mu - Yt)).T @ Xs).numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(H.numpy(), torch.einsum("nb,np,nq->bpq", wt * mu, Xs, Xs).numpy(), rtol=1e-10, atol=1e-12)
    idx = torch.tensor([1, 4])
    np.testing.assert_allclose(P.value(U[idx], idx).numpy(), P.value(U).numpy()[[1, 4]], rtol=1e-13)


def test_path_equals_the_direct_route(monkeypatch):
    X, Y, off = _design(seed=2)
    pf = np.r_[np.ones(4), np.zeros(3)]
    kw = dict(l1_ratio=0.5, n_alphas=8, penalty_factor=pf, standardize=True, tol=1e-9, device="cpu")
    fast = GLMNet("poisson", **kw).fit(X, Y, offset=off)
    monkeypatch.setattr(PoissonSums, "applies", staticmethod(lambda X, offset: False))
    slow = GLMNet("poisson", **kw).fit(X, Y, offset=off)
    np.testing.assert_allclose(fast.alphas_, slow.alphas_, rtol=1e-10)
    np.testing.assert_allclose(fast.objective_path_, slow.objective_path_, rtol=1e-10)
    np.testing.assert_allclose(fast.deviance_explained_path_, slow.deviance_explained_path_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fast.coef_path_, slow.coef_path_, atol=1e-6)
    assert fast.report_["converged"]


def test_per_response_offsets_take_the_direct_route():
    X, Y, off = _design()
    assert PoissonSums.applies(X, off)
    assert not PoissonSums.applies(X, np.repeat(off[:, None], Y.shape[1], 1))
    assert not PoissonSums.applies(np.random.default_rng(0).normal(size=(50, 9)), None)  # too many continuous columns
