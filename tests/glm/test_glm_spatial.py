"""S3R with a count data fit (Condat–Vũ with backtracking) against cvxpy."""

import numpy as np
import pytest

from s3r.graph import knn_graph
from s3r.solver import build_operator
from s3r.solver.glm_batch import solve_glm_batch

cp = pytest.importorskip("cvxpy")


def _problem(seed=1, n=36, p=3):
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    X = np.c_[np.ones(n), rng.normal(size=(n, p - 1))]
    W = np.c_[1 + (coords[:, 0] > 0.5), 0.5 * np.ones(n), np.zeros(n)]
    off = rng.normal(0, 0.2, n)
    y = rng.poisson(np.exp((X * W).sum(1) + off)).astype(float)
    return coords, X, y, off


@pytest.mark.parametrize("smooth", ["tv", "quadratic"])
def test_spatial_poisson_matches_cvxpy(smooth):
    coords, X, y, off = _problem()
    n, p = X.shape
    g = knn_graph(coords, k=4)
    lam, a, b = 0.02, 0.01, 0.005
    K = build_operator(smooth, edges=g.edges, edge_weights=g.weights, n_nodes=n, device="cpu")
    r = solve_glm_batch(X, y, family="poisson", smooth=smooth, operator=K, lambda_smooth=lam, alpha=a, beta=b,
                        offset=off, tol=1e-7, max_iter=50_000, device="cpu")
    assert r.converged[0]
    W = cp.Variable((n, p))
    eta = cp.sum(cp.multiply(X, W), axis=1) + off
    A = g.incidence().toarray()
    S = cp.sum(cp.abs(A @ W)) if smooth == "tv" else cp.sum_squares(A @ W)
    const = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0) - y  # deviance = 2(μ − yη + y log y − y)
    obj = 2 / n * (cp.sum(cp.exp(eta) - cp.multiply(y, eta)) + const.sum()) + lam * S + a * cp.sum(cp.abs(W)) + b * np.sqrt(n) * cp.sum(cp.norm(W, 2, axis=0))
    ref = cp.Problem(cp.Minimize(obj))
    ref.solve(solver="CLARABEL")
    assert abs(r.objective[0] - ref.value) <= 1e-4 * abs(ref.value)
    assert r.objective[0] <= ref.value * (1 + 1e-5)


def test_batched_problems_are_independent():
    coords, X, y, off = _problem(2, n=30)
    g = knn_graph(coords, k=4)
    K = build_operator("tv", edges=g.edges, edge_weights=g.weights, n_nodes=30, device="cpu")
    kw = dict(family="negative_binomial", theta=5.0, smooth="tv", operator=K, alpha=0.01, beta=0.0, offset=off, tol=1e-6, device="cpu")
    both = solve_glm_batch(X, np.c_[y, y], lambda_smooth=[0.01, 0.05], **kw)
    one = solve_glm_batch(X, y, lambda_smooth=0.05, **kw)
    np.testing.assert_allclose(both.objective[1], one.objective[0], rtol=1e-5)
    assert both.W.shape == (30, 2, 3)


def test_s3r_estimator_poisson_family_and_gaussian_default_untouched():
    from s3r import S3R

    coords, X, y, off = _problem(3, n=40)
    # the design carries its own intercept column, so the reference parameterisation (no added intercept) applies
    m = S3R("tv", 0.02, 0.01, 0.005, k=4, family="poisson", tol=1e-6, device="cpu", scaling="reference").fit(X, y, coords, offset=off)
    assert m.report_["converged"] and m.report_["family"] == "poisson"
    assert m.report_["n_masked_spots"] == 0  # zeros are counts, not dropouts
    mu = m.predict(X, offset=off)
    assert np.all(mu > 0) and 0 < m.score(X, y, offset=off) < 1
    g = S3R("tv", 0.02, 0.01, 0.005, k=4, device="cpu").fit(X, np.log1p(y), coords)
    assert g.report_["method"] == "pdhg" and g.report_["family"] == "gaussian"


def test_theta_that_runs_to_its_bound_falls_back_to_the_tunings_theta():
    """Per-spot coefficients with little smoothing absorb all overdispersion: the joint ML θ runs to 1e6 (a Poisson
    model). The fit then uses the intercept model's θ — the one s3r tune scores its trials with — and says so."""
    from s3r import S3R
    from s3r.cv import reference_theta

    rng = np.random.default_rng(4)
    n = 150
    coords = rng.uniform(size=(n, 2))
    X = rng.normal(size=(n, 3))
    off = np.log(rng.uniform(500, 5000, n))
    # NB counts whose extra variance is a smooth spatial field the coefficients can take up
    field = 0.8 * np.sin(6 * coords[:, 0]) * np.cos(5 * coords[:, 1])
    y = rng.poisson(np.exp(np.log(8 / 2000) + off + field + 0.4 * X[:, 0])).astype(float)
    m = S3R("tv", 1e-4, 1e-5, 1e-5, k=6, family="negative_binomial", theta="estimate", device="cpu", tol=1e-4)
    with pytest.warns(UserWarning, match=r"theta ran to its upper bound .* uses the intercept model's theta"):
        m.fit(X, y, coords, offset=off)
    ref = reference_theta(y, off)
    assert m.theta_ == pytest.approx(ref) and ref < 100  # the intercept model sees the field as overdispersion
    assert m.report_["theta"] == pytest.approx(ref)
    assert m.report_["theta_at_bound"] and not m.report_["theta_estimated"]
    assert m.theta_history_[-2] >= 0.999e6 and m.theta_history_[-1] == pytest.approx(ref)
