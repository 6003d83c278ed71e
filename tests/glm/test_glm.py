"""GLM families and the batched elastic-net path against statsmodels and scikit-learn."""

import numpy as np
import pytest

from s3r.errors import S3RInputError
from s3r.glm import GLMNet
from s3r.perturb import fit_perturbseq, gene_programmes, simulate_perturbseq

sm = pytest.importorskip("statsmodels.api")


def _data(seed=0, n=300, p=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    off = rng.normal(0, 0.3, n)
    mu = np.exp(0.5 + X @ np.linspace(0.4, -0.3, p) + off)
    return rng, X, off, mu


@pytest.mark.parametrize("family", ["poisson", "gamma", "negative_binomial"])
def test_unpenalised_matches_statsmodels(family):
    rng, X, off, mu = _data()
    if family == "poisson":
        y, smf = rng.poisson(mu), sm.families.Poisson()
    elif family == "gamma":
        y, smf = rng.gamma(2.0, mu / 2.0), sm.families.Gamma(sm.families.links.Log())
    else:
        y, smf = rng.negative_binomial(3, 3 / (3 + mu)), sm.families.NegativeBinomial(alpha=1 / 3)
    m = GLMNet(family, alpha=0.0, theta=3.0 if family == "negative_binomial" else None, standardize=False, tol=1e-8, device="cpu")
    m.fit(X, y, offset=off)
    ref = sm.GLM(y, sm.add_constant(X), family=smf, offset=off).fit(tol=1e-12)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ref.params, atol=1e-6)
    np.testing.assert_allclose(m.scores(X, y, offset=off)["deviance"] * len(y), ref.deviance, rtol=1e-6)
    if family == "gamma":
        np.testing.assert_allclose(m.dispersion_, ref.scale, rtol=1e-6)
    assert 0 < m.score(X, y, offset=off) < 1


def test_negative_binomial_theta_estimated_matches_statsmodels():
    rng, X, off, mu = _data(1)
    y = rng.negative_binomial(2.5, 2.5 / (2.5 + mu))
    m = GLMNet("negative_binomial", alpha=0.0, standardize=False, tol=1e-8, device="cpu").fit(X, y, offset=off)
    ref = sm.NegativeBinomial(y, sm.add_constant(X), offset=off).fit(disp=0, method="bfgs", maxiter=5000, gtol=1e-10)
    np.testing.assert_allclose(np.r_[m.intercept_, m.coef_], ref.params[:-1], atol=1e-5)
    np.testing.assert_allclose(m.theta_, 1 / ref.params[-1], rtol=1e-4)


def test_gaussian_equals_sklearn_elasticnet_batched():
    from sklearn.linear_model import ElasticNet

    rng = np.random.default_rng(2)
    n, p, B = 200, 8, 5
    X = rng.normal(size=(n, p)) * rng.uniform(0.5, 3, p)
    Y = X @ (rng.normal(size=(p, B)) * (rng.random((p, B)) < 0.5)) + rng.normal(size=(n, B)) + 3
    alphas = [0.5, 0.1, 0.01]
    m = GLMNet(alphas=alphas, l1_ratio=0.7, standardize=False, tol=1e-10, device="cpu").fit(X, Y)
    for k, a in enumerate(alphas):
        for b in range(B):
            ref = ElasticNet(alpha=a, l1_ratio=0.7, tol=1e-12, max_iter=100_000).fit(X, Y[:, b])
            np.testing.assert_allclose(m.coef_path_[k, b], ref.coef_, atol=1e-7)
            np.testing.assert_allclose(m.intercept_path_[k, b], ref.intercept_, atol=1e-7)


def test_path_starts_at_lambda_max_and_cv_selects():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 10))
    y = rng.poisson(np.exp(0.3 + X[:, 0] - 0.5 * X[:, 1]))
    m = GLMNet("poisson", n_alphas=15, cv=3, device="cpu").fit(X, y)
    assert np.all(m.coef_path_[0] == 0) and np.any(m.coef_path_[1] != 0)
    assert m.cv_deviance_.shape == (15, 1)
    assert m.alpha_index_[0] > 0
    assert set(np.flatnonzero(m.coef_)) >= {0, 1}
    assert np.all(np.diff(m.deviance_explained_path_[:, 0]) >= -1e-9)


def test_penalty_factor_zero_is_never_shrunk():
    """An unpenalised covariate's coefficient equals the fit of intercept + covariates alone once the rest are zero."""
    rng = np.random.default_rng(4)
    n = 400
    X = rng.normal(size=(n, 6))
    cov = rng.normal(size=n) * 5
    y = rng.poisson(np.exp(0.2 + 0.3 * cov / 5 + 0.4 * X[:, 0]))
    Xf = np.c_[X, cov]
    pf = np.r_[np.ones(6), 0.0]
    m = GLMNet("poisson", penalty_factor=pf, n_alphas=10, tol=1e-8, device="cpu").fit(Xf, y)
    assert np.all(m.coef_path_[0, 0, :6] == 0)
    ref = sm.GLM(y, sm.add_constant(cov), family=sm.families.Poisson()).fit(tol=1e-12)
    np.testing.assert_allclose(m.coef_path_[0, 0, 6], ref.params[1], rtol=1e-6)
    assert np.all(m.coef_path_[:, 0, 6] != 0)
    big = GLMNet("poisson", penalty_factor=pf, alpha=1e3, device="cpu").fit(Xf, y)
    np.testing.assert_allclose(big.coef_[6], ref.params[1], rtol=1e-6)


def test_bad_inputs_are_one_line_errors():
    X = np.ones((5, 2))
    with pytest.raises(S3RInputError, match="non-negative"):
        GLMNet("poisson").fit(X, -np.ones(5))
    with pytest.raises(S3RInputError, match="strictly positive"):
        GLMNet("gamma").fit(X, np.zeros(5))
    with pytest.raises(S3RInputError, match="penalty_factor"):
        GLMNet(penalty_factor=[1]).fit(X, np.ones(5))
    with pytest.raises(S3RInputError, match="unknown family"):
        GLMNet("binomialx").fit(X, np.ones(5))


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_perturbseq_recovers_planted_effects(family):
    counts, obs, effects, prog = simulate_perturbseq(n_cells=1500, n_genes=48, n_perturbations=6, n_programmes=3, effect=1.0, seed=1)
    res = fit_perturbseq(counts, obs, perturbation_key="perturbation", covariates=["batch", "pct_mito"],
                         genes=[f"gene_{j + 1}" for j in range(48)], family=family, alpha=0.01, device="cpu")
    W = res.coef.loc[[f"P{j + 1}" for j in range(6)]].to_numpy()
    hit = effects != 0
    assert np.corrcoef(W.ravel(), effects.ravel())[0, 1] > 0.9
    assert np.all(np.sign(W[hit]) == np.sign(effects[hit]))
    assert np.median(np.abs(W[hit])) > 5 * np.median(np.abs(W[~hit]))
    assert list(res.covariate_coef.index) == ["batch=b1", "pct_mito"]
    assert res.programme_scores.shape[0] == 6
    if family == "poisson":  # log fold changes on the count scale
        np.testing.assert_allclose(np.median(W[hit] * np.sign(effects[hit])), 1.0, atol=0.15)


def test_gene_programmes_group_co_regulated_genes():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(0)
    truth = np.repeat([1, 2, 3], 10)
    profiles = rng.normal(size=(8, 3))
    coef = profiles[:, truth - 1] + 0.05 * rng.normal(size=(8, 30))
    labels = gene_programmes(coef, n_programmes=3)
    assert adjusted_rand_score(truth, labels) == 1.0


def test_spateo_style_api_names():
    """GLM / GLMCV with score_metric, fit_predict and clip_coeffs; pseudo-R² is statsmodels' McFadden."""
    from s3r.glm import GLM, GLMCV

    rng, X, off, mu = _data(5)
    y = rng.poisson(mu)
    m = GLM("poisson", alpha=0.0, standardize=False, tol=1e-10, device="cpu", score_metric="pseudo_r2")
    pred = m.fit_predict(X, y, offset=off)
    np.testing.assert_allclose(pred, m.predict(X, off))
    ref = sm.GLM(y, sm.add_constant(X), family=sm.families.Poisson(), offset=off).fit(tol=1e-12)
    assert m.score(X, y, offset=off) == pytest.approx(ref.pseudo_rsquared(kind="mcf"), rel=1e-6)
    assert m.set_params(score_metric="deviance").score(X, y, offset=off) == pytest.approx(ref.deviance / len(y), rel=1e-6)
    cv = GLMCV("poisson", n_alphas=6, device="cpu").fit(X, y, offset=off)
    assert cv.cv == 5 and cv.cv_deviance_.shape == (6, 1) and cv.get_params()["score_metric"] == "deviance"
    m.coef_ = np.r_[1e-12, m.coef_[1:]]  # round-off where a coefficient should vanish
    assert m.clip_coeffs(1e-9).coef_[0] == 0.0 and np.all(m.coef_[1:] != 0)
    with pytest.raises(S3RInputError, match="score_metric must be"):
        m.set_params(score_metric="r2").score(X, y, offset=off)


def test_scikit_learn_estimator_protocol():
    """GLMNet, GLM and GLMCV are BaseEstimators: clone keeps every parameter (the subclasses' own defaults too),
    repr shows what differs from the defaults, and an unfitted model raises NotFittedError."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    from s3r.glm import GLM, GLMCV

    m = GLMCV("poisson", n_alphas=7, tol=1e-8, penalty_factor=[0.0, 1.0])
    c = clone(m)
    assert c is not m and c.get_params()["n_alphas"] == 7 and c.get_params()["cv"] == 5 and c.score_metric == "deviance"
    assert c.penalty_factor == [0.0, 1.0] and set(c.get_params()) == set(GLMNet().get_params())
    assert repr(c) == "GLMCV(family='poisson', n_alphas=7, penalty_factor=[0.0, 1.0], tol=1e-08)"
    assert GLM().set_params(l1_ratio=0.2).l1_ratio == 0.2 and GLM().get_params()["score_metric"] == "deviance"
    with pytest.raises(NotFittedError, match="this GLM model is not fitted yet"):
        GLM().predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="Invalid parameter 'lambda_'"):
        GLMNet().set_params(lambda_=1.0)


def test_tikhonov_tau_is_the_ridge_part():
    """Tau (spateo's Tikhonov matrix): pure ridge (l1_ratio 0) equals the closed form for the gaussian and a
    scipy minimisation for the poisson with a non-diagonal Tau; Tau = diag(√f) reproduces the default elastic net
    along a path (gaussian FISTA vs the Newton model, poisson with standardisation); a wrong Tau is one line."""
    from scipy.optimize import minimize

    from s3r.glm import GLM

    rng = np.random.default_rng(0)
    n, p, lam = 400, 6, 0.3
    X = rng.normal(size=(n, p))
    beta = np.array([0.5, -0.4, 0.3, 0.0, 0.0, 0.2])
    T = rng.normal(size=(4, p))
    y = X @ beta + rng.normal(size=n)
    m = GLM("gaussian", l1_ratio=0.0, alpha=lam, standardize=False, Tau=T, tol=1e-10, device="cpu").fit(X, y)
    Xc = X - X.mean(0)
    ridge = np.linalg.solve(Xc.T @ Xc / n + lam * T.T @ T, Xc.T @ (y - y.mean()) / n)
    np.testing.assert_allclose(m.coef_, ridge, atol=1e-8)
    assert np.abs(ridge - GLM("gaussian", l1_ratio=0.0, alpha=lam, standardize=False, device="cpu").fit(X, y).coef_).max() > 1e-2

    yp = rng.poisson(np.exp(0.3 + 0.3 * X @ beta)).astype(float)
    K = T.T @ T

    def objective(v):
        eta = v[0] + X @ v[1:]
        return np.mean(np.exp(eta) - yp * eta) + 0.5 * lam * v[1:] @ K @ v[1:]

    def gradient(v):
        r = np.exp(v[0] + X @ v[1:]) - yp
        return np.r_[r.mean(), X.T @ r / n + lam * K @ v[1:]]

    ref = minimize(objective, np.zeros(p + 1), jac=gradient, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000})
    mp = GLM("poisson", l1_ratio=0.0, alpha=lam, standardize=False, Tau=T, tol=1e-10, device="cpu").fit(X, yp)
    np.testing.assert_allclose(np.r_[mp.intercept_, mp.coef_], ref.x, atol=1e-6)

    B = 40
    pf = np.r_[0.5, 2.0, 1.0, 1.0, 1.0, 0.0]
    Y = X @ (rng.normal(size=(p, B)) * (rng.random((p, B)) < 0.5)) + rng.normal(size=(n, B))
    YP = rng.poisson(np.exp(0.5 + X @ (0.3 * rng.normal(size=(p, B))))).astype(float)
    for family, Yb, std in (("gaussian", Y, False), ("poisson", YP, True)):
        kw = dict(l1_ratio=0.5, n_alphas=8, penalty_factor=pf, standardize=std, tol=1e-8, device="cpu")
        base = GLMNet(family, **kw).fit(X, Yb)
        tau = GLMNet(family, Tau=np.diag(np.sqrt(pf)), **kw).fit(X, Yb)
        assert tau.report_["converged"] and (base.coef_path_ == 0).sum() > 0
        np.testing.assert_allclose(tau.coef_path_, base.coef_path_, atol=1e-7)
        np.testing.assert_allclose(tau.objective_path_, base.objective_path_, rtol=1e-9)
    for bad, message in ((np.eye(3), r"Tau must be a finite \(m, 6\) matrix"), (np.eye(p), "column 5, an unpenalised feature")):
        with pytest.raises(S3RInputError, match=message):
            GLMNet("gaussian", penalty_factor=pf, Tau=bad, device="cpu").fit(X, Y)
