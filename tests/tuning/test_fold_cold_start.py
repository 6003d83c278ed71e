"""A fold's fresh trials start cold, as a single fit does, through the coarse levels on large graphs (issue 11, session 17)."""

from __future__ import annotations

import numpy as np

import s3r.cv.solve as solve_mod
from s3r import cv

from test_fold_batches import piecewise_problem

PARAMS = [{"lambda_smooth": lam, "alpha": a, "beta": b}
          for lam, a, b in ((0.004, 0.0004, 0.001), (0.001, 0.0001, 0.0002), (0.002, 0.0002, 0.0005), (0.008, 0.0003, 0.0006))]


def _spy(monkeypatch) -> list[dict]:
    calls = []
    real = solve_mod.solve_batch

    def spy(X, Y, **kw):
        res = real(X, Y, **kw)
        calls.append({"cold": kw["W0"] is None and kw["dual0"] is None and kw["data_dual0"] is None,
                      "levels": res.multilevel is not None})
        return res

    monkeypatch.setattr(solve_mod, "solve_batch", spy)
    return calls


def test_fresh_trials_solved_one_at_a_time_each_start_cold_through_the_coarse_levels(monkeypatch):
    """At 10⁵ spots a fold's trials are solved one at a time (the edge duals' memory cap). On main only the first
    started cold: the others started from the zero state the first one's solve left in the fold's arrays, so no
    coarse level (nor the constant start) ever ran for them. Now each trial's first chunk is a cold solve, with the
    coarse levels above ``COARSEN_MIN_SPOTS``, and the fold converges to the optimum the fine-only solves reach."""
    problem, folds = piecewise_problem(1200, seed=3, slope=0.1, low=-0.6)
    kw = dict(tol=1e-6, max_iter=20_000, chunk=100, batch=1)
    fine = cv.solve_fold(problem, PARAMS, folds, 1, **kw)
    monkeypatch.setattr(solve_mod, "COARSEN", True)
    monkeypatch.setattr(solve_mod, "COARSEN_MIN_SPOTS", 1000)
    calls = _spy(monkeypatch)
    coarse = cv.solve_fold(problem, PARAMS, folds, 1, **kw)
    assert sum(c["cold"] for c in calls) == len(PARAMS)  # one cold first chunk per trial
    assert sum(c["levels"] for c in calls) == len(PARAMS)  # … each through the coarse levels
    assert fine.converged.all() and coarse.converged.all()
    for b in range(len(PARAMS)):
        scale = np.abs(fine.W[:, b]).max()
        np.testing.assert_allclose(coarse.W[:, b], fine.W[:, b], rtol=0, atol=1e-3 * scale)


def test_coarse_started_fold_solves_at_the_tunings_tolerance_rank_the_trials_as_fine_ones(monkeypatch):
    """The tuning's settings (tol 1e-2, ≤ 500 iterations in chunks of 100): the held-out losses of coarse-started
    solves are within the tolerance's slack of the fine-only ones and of the exact optimum's, and order the trials alike."""
    problem, folds = piecewise_problem(1200, seed=3, slope=0.1, low=-0.6)
    losses = lambda sol: cv.fold_losses(problem, sol, folds, 1)  # noqa: E731
    exact = losses(cv.solve_fold(problem, PARAMS, folds, 1, tol=1e-7, max_iter=50_000, chunk=50_000, batch=1))
    loose = dict(tol=1e-2, max_iter=500, chunk=100, batch=1)
    fine = losses(cv.solve_fold(problem, PARAMS, folds, 1, **loose))
    monkeypatch.setattr(solve_mod, "COARSEN", True)
    monkeypatch.setattr(solve_mod, "COARSEN_MIN_SPOTS", 1000)
    coarse = losses(cv.solve_fold(problem, PARAMS, folds, 1, **loose))
    for got in (fine, coarse):
        np.testing.assert_allclose(got, exact, rtol=2e-2)
    assert np.argsort(coarse).tolist() == np.argsort(fine).tolist() == np.argsort(exact).tolist()
