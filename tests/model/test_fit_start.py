"""A final fit started from a map on the solver's scale (the tuning's fold solutions of the chosen trial): the same
optimum as a cold fit, reached in fewer iterations; a wrong shape is one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from s3r import S3R, cv
from s3r.errors import S3RInputError


def _sample(seed=2, n=200, p=5):
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    X = rng.normal(size=(n, p))
    y = X[:, 0] * np.where(coords[:, 0] < 0.5, 1.0, 0.2) + 0.5 * X[:, 1] + 0.5 * rng.normal(size=n) + 2.0
    return X, y, coords


PARAMS = dict(lambda_smooth=0.3, alpha=0.01, beta=0.01)


def test_a_fit_started_at_a_fold_solution_reaches_the_cold_fits_optimum_sooner():
    X, y, coords = _sample()
    cold = S3R(**PARAMS, dtype="float64").fit(X, y, coords)
    # the chosen trial's fold solutions, as the tuning keeps them: same assembly, held-out spots weighted 0
    problem = cv.CVProblem.from_arrays(X, y, coords, dtype="float64", model=cold.model_settings())
    folds = cv.make_folds(coords, 4, "blocks", seed=0)
    maps = [cv.solve_fold(problem, [PARAMS], folds, k, tol=1e-2, max_iter=500).W[:, 0, :] for k in range(4)]
    warm = S3R(**PARAMS, dtype="float64").fit(X, y, coords, start=np.mean(maps, axis=0))
    assert cold.report_["converged"] and warm.report_["converged"]
    assert warm.report_["objective"] == pytest.approx(cold.report_["objective"], rel=1e-6)
    np.testing.assert_allclose(warm.coef_, cold.coef_, rtol=0, atol=1e-3 * np.abs(cold.coef_).max())
    assert warm.n_iter_ < cold.n_iter_, (warm.n_iter_, cold.n_iter_)


def test_a_start_of_the_wrong_shape_is_refused():
    X, y, coords = _sample()
    with pytest.raises(S3RInputError, match="start must be a finite map of shape"):
        S3R(**PARAMS).fit(X, y, coords, start=np.zeros((3, 3)))


def test_a_started_fit_reports_its_own_solve_time():
    """The working-set loop's timer was once overwritten by a loop index when a start brought an edge dual, so a
    started fit reported the machine's uptime as its solve time (the 200-target run's fit.json: 54,076 s)."""
    import time

    X, y, coords = _sample(p=20)  # more features than two minimal working sets: the working-set loop runs
    problem = cv.CVProblem.from_arrays(X, y, coords, dtype="float64", model=S3R(**PARAMS).model_settings())
    folds = cv.make_folds(coords, 4, "blocks", seed=0)
    start = cv.solve_fold(problem, [PARAMS], folds, 0, tol=1e-2, max_iter=500).W[:, 0, :]
    wall = time.perf_counter()
    warm = S3R(**PARAMS, dtype="mixed", tol=1e-5).fit(X, y, coords, start=start)
    wall = time.perf_counter() - wall
    assert 0 <= warm.report_["solve_seconds"] <= wall, (warm.report_["solve_seconds"], wall)
