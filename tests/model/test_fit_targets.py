"""Several targets of one sample fitted in one batched solve (s3r.fit_targets) give each target the fit it gets alone."""

from __future__ import annotations

import numpy as np
import pytest

from s3r import S3R
from s3r.fit_targets import fit_targets


def _sample(seed=4, n=150, p=6):
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    X = rng.normal(size=(n, p))
    left = coords[:, 0] < 0.5
    ys = [
        X[:, 0] * np.where(left, 1.0, 0.2) + 0.5 * rng.normal(size=n) + 3.0,
        X[:, 1] * 0.8 - X[:, 2] * np.where(coords[:, 1] < 0.5, 0.6, 0.0) + 0.4 * rng.normal(size=n),
        0.3 * rng.normal(size=n) + 10.0,  # no effect of the features: the intercept only
    ]
    return X, ys, coords


@pytest.mark.parametrize("dtype", ["mixed", "float64"])
def test_targets_fitted_together_get_the_fit_each_gets_alone(dtype):
    X, ys, coords = _sample()
    params = [dict(lambda_smooth=0.05, alpha=0.01, beta=0.01), dict(lambda_smooth=0.2, alpha=0.02, beta=0.005),
              dict(lambda_smooth=0.1, alpha=0.05, beta=0.05)]
    alone = [S3R(**kw, dtype=dtype).fit(X, y, coords) for kw, y in zip(params, ys)]
    together = fit_targets([S3R(**kw, dtype=dtype) for kw in params], X, ys, coords, batch_on_cpu=True)
    for a, b in zip(alone, together):
        assert a.report_["converged"] and b.report_["converged"]
        scale = max(1.0, float(np.abs(a.coef_).max()))
        np.testing.assert_allclose(b.coef_, a.coef_, rtol=0, atol=2e-3 * scale)
        assert b.intercept_ == pytest.approx(a.intercept_, rel=1e-3, abs=1e-3)
        assert b.report_["objective"] == pytest.approx(a.report_["objective"], rel=1e-4)
        assert b.report_["solver_penalties"] == a.report_["solver_penalties"]
        assert b.predict(X).shape == (X.shape[0],)
    assert together[2].report_["selected_features"] == alone[2].report_["selected_features"]


def test_models_that_cannot_share_a_solve_are_fitted_one_by_one():
    X, ys, coords = _sample()
    models = [S3R(lambda_smooth=0.05, alpha=0.01, beta=0.01), S3R(smooth="quadratic", lambda_smooth=0.05, alpha=0.01, beta=0.01)]
    out = fit_targets(models, X, ys[:2], coords, batch_on_cpu=True)
    for m, y in zip(out, ys[:2]):
        ref = S3R(**m.get_params()).fit(X, y, coords)
        np.testing.assert_array_equal(m.coef_, ref.coef_)  # the same call as alone: the same numbers


def test_on_a_cpu_the_targets_are_fitted_one_by_one_by_default():
    """The batch solves the union of the targets' working sets; on a CPU that cost more than it saved (10 DLPFC
    targets: 74 vs 56 CPU-s), so each target gets exactly the fit it gets alone."""
    X, ys, coords = _sample()
    out = fit_targets([S3R(lambda_smooth=0.05, alpha=0.01, beta=0.01, device="cpu") for _ in ys], X, ys, coords)
    for m, y in zip(out, ys):
        np.testing.assert_array_equal(m.coef_, S3R(lambda_smooth=0.05, alpha=0.01, beta=0.01, device="cpu").fit(X, y, coords).coef_)
