"""A fold solve warm-started from an earlier round's W and data dual (no edge dual: the fold-state files do not keep
it) gets the clipped flow of that start's optimality conditions as its edge dual (s3r.solver.flow_start)."""

from __future__ import annotations

import numpy as np

from s3r import cv


def _fold_problem():
    rng = np.random.default_rng(11)
    n, p = 80, 5
    coords, X = rng.uniform(size=(n, 2)), rng.normal(size=(n, p))
    y = X[:, 0] * np.where(coords[:, 0] > 0.5, 1.0, 0.4) + X[:, 1] * 0.6 + 0.3 * rng.normal(size=n)
    problem = cv.CVProblem.from_arrays(X, y, coords, dtype="float64")
    return problem, cv.make_folds(coords, 3, "blocks", seed=0)


def test_a_primal_warm_start_of_a_fused_map_is_certified_at_once(monkeypatch):
    """The tuning's round-2 situation: the same trial's solution comes back as W, data dual and step. With the flow
    dual the fused map is certified at the first residual checks; with a zero edge dual (as before session 16) the
    map unfuses and takes thousands of iterations to fuse again (2,130 and 3,340). Both reach the same held-out loss.
    Where the min-norm flow does not fit the box it is only a start (λ = 2, fused too: 900 against 1,230)."""
    import s3r.cv.solve as solve_mod

    problem, folds = _fold_problem()
    params = [{"lambda_smooth": lam, "alpha": 0.002, "beta": 0.002} for lam in (10.0, 50.0)]  # both fuse every feature
    kw = dict(tol=1e-5, max_iter=20_000, chunk=20_000)
    first = cv.solve_fold(problem, params, folds, 0, **kw)
    assert first.converged.all()
    warm = {"W": first.W, "data_dual": first.data_dual, "step": first.step}
    again = cv.solve_fold(problem, params, folds, 0, warm=warm, **kw)
    monkeypatch.setattr(solve_mod, "warm_flow_dual", lambda X, W0, *a, **k: np.zeros((k["flows"].K.shape[0],) + W0.shape[1:]))
    zero_dual = cv.solve_fold(problem, params, folds, 0, warm=warm, **kw)
    assert again.converged.all() and zero_dual.converged.all()
    assert int(again.iterations.max()) <= 30, again.iterations
    assert int(zero_dual.iterations.min()) >= 10 * int(again.iterations.max()), (zero_dual.iterations, again.iterations)
    for sol in (again, zero_dual):
        loss = cv.fold_losses(problem, sol, folds, 0)
        np.testing.assert_allclose(loss, cv.fold_losses(problem, first, folds, 0), rtol=1e-4)
