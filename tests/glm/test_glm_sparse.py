"""Sparse responses end to end (issue 14): the same fit as dense, held-out deviance from Gram statistics equal to
residuals computed directly, the one-hot Hessian path against statsmodels, and memory that follows non-zeros."""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from s3r.glm import GLMNet
from s3r.perturb import fit_perturbseq, simulate_perturbseq

sm = pytest.importorskip("statsmodels.api")


def _onehot_design(n=900, k=5, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, k + 1, n)  # 0 = control
    D = np.zeros((n, k))
    D[g > 0, g[g > 0] - 1] = 1
    C = np.c_[rng.integers(0, 2, n), rng.normal(0, 1, n)]  # a replicate one-hot and a continuous covariate
    return rng, np.c_[D, C]


def _counts(rng, X, B=12):
    beta = rng.normal(0, 0.6, (X.shape[1], B)) * (rng.random((X.shape[1], B)) < 0.5)
    mu = np.exp(-0.3 + X @ beta)
    Y = rng.poisson(mu).astype(float)
    return Y


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_sparse_responses_fit_as_dense(family):
    rng, X = _onehot_design()
    Y = _counts(rng, X)
    if family == "gaussian":
        Y = np.log1p(Y)
    assert np.mean(Y == 0) > 0.3
    kw = dict(n_alphas=6, cv=3, penalty_factor=np.r_[np.ones(5), 0, 0], standardize=False, device="cpu", tol=1e-9)
    dense = GLMNet(family, **kw).fit(X, Y)
    sparse = GLMNet(family, batch_size=5, **kw).fit(X, sp.csr_matrix(Y))  # poisson: three column blocks
    for name in ("coef_path_", "intercept_path_", "cv_deviance_", "cv_null_deviance_", "deviance_explained_path_", "coef_"):
        np.testing.assert_allclose(getattr(sparse, name), getattr(dense, name), rtol=1e-7, atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(sparse.alpha_index_, dense.alpha_index_)
    sd, ss = dense.scores(X, Y), sparse.scores(X, sp.csc_matrix(Y))
    for key in sd:
        np.testing.assert_allclose(ss[key], sd[key], rtol=1e-8, atol=1e-12, err_msg=key)


def test_gaussian_heldout_deviance_equals_residuals_on_the_test_fold():
    """The Gram-statistics held-out loss against fold fits redone by hand and residuals computed directly."""
    rng, X = _onehot_design(600)
    Y = np.log1p(_counts(rng, X, B=4))
    m = GLMNet("gaussian", n_alphas=5, cv=3, standardize=False, device="cpu", tol=1e-10, random_state=7).fit(X, sp.csr_matrix(Y))
    fold_of = np.random.default_rng(7).permutation(np.arange(600) % 3)
    losses, nulls = [], []
    for f in range(3):
        tr, te = fold_of != f, fold_of == f
        fit = GLMNet("gaussian", alphas=m.alphas_[:, 0], standardize=False, device="cpu", tol=1e-10).fit(X[tr], Y[tr, 0])
        pred = fit.intercept_path_[:, 0, None] + fit.coef_path_[:, 0] @ X[te].T  # (K, n_te)
        losses.append(((Y[te, 0][None] - pred) ** 2).mean(1))
        nulls.append(((Y[te, 0] - Y[tr, 0].mean()) ** 2).mean())
    sizes = np.bincount(fold_of) / 600
    np.testing.assert_allclose(m.cv_deviance_[:, 0], np.average(losses, axis=0, weights=sizes), rtol=1e-6)
    np.testing.assert_allclose(m.cv_null_deviance_[:, 0], np.average(nulls, weights=sizes), rtol=1e-9)
    np.testing.assert_allclose(m.cv_deviance_explained_[:, 0], 1 - m.cv_deviance_[:, 0] / m.cv_null_deviance_[:, 0])


def test_onehot_hessian_path_matches_statsmodels():
    """A one-hot design takes the group-sum Hessian; unpenalised it must still be the Poisson MLE."""
    rng, X = _onehot_design(1200)
    y = _counts(rng, X, B=1)[:, 0]
    off = rng.normal(0, 0.2, len(y))
    m = GLMNet("poisson", alpha=0.0, standardize=False, device="cpu", tol=1e-10).fit(X, y, offset=off)
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson(), offset=off).fit(tol=1e-13)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ref.params, atol=1e-6)


def test_perturbseq_memory_follows_nonzeros():
    """20,000 cells × 1,000 genes at 2 % density: the 800 responses alone are 128 MB dense in float64; the whole
    fit (normalisation, gene selection, design, Gram, scores) must stay well below that (non-zeros: 5 MB)."""
    rng = np.random.default_rng(0)
    n, g = 20_000, 1_000
    counts = sp.random(n, g, density=0.02, format="csr", random_state=1, data_rvs=lambda k: rng.integers(1, 6, k)).astype(np.float64)
    counts = sp.hstack([counts, sp.csr_matrix(np.ones((n, 1)))], format="csr")  # no empty cell
    import pandas as pd

    obs = pd.DataFrame({"perturbation": np.where(rng.random(n) < 0.2, "control", [f"P{j}" for j in rng.integers(1, 9, n)]),
                        "rep": pd.Categorical(rng.integers(0, 3, n).astype(str))})
    tracemalloc.start()
    res = fit_perturbseq(counts, obs, perturbation_key="perturbation", covariates=["rep"], n_top_genes=800, alpha=0.01, device="cpu")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.coef.shape == (8, 800)
    assert peak < 60e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_perturbseq_sparse_input_equals_dense(family):
    counts, obs, _, _ = simulate_perturbseq(n_cells=500, n_genes=40, n_perturbations=4, n_programmes=2, seed=5)
    kw = dict(perturbation_key="perturbation", covariates=["batch"], n_top_genes=30, family=family, cv=3, n_alphas=5, device="cpu")
    a = fit_perturbseq(counts, obs, **kw)
    b = fit_perturbseq(sp.csr_matrix(counts), obs, **kw)
    assert list(a.coef.columns) == list(b.coef.columns)
    np.testing.assert_allclose(b.coef.to_numpy(), a.coef.to_numpy(), atol=1e-8)
    np.testing.assert_allclose(b.covariate_coef.to_numpy(), a.covariate_coef.to_numpy(), atol=1e-8)
