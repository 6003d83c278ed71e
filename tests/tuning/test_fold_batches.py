"""The tuning's chunked fold solves give each problem its own optimum whatever the batch size (issue 13)."""

from __future__ import annotations

import numpy as np

import s3r.solver.working_set as ws_mod
from s3r import cv


def test_chunked_fold_solves_of_a_large_batch_grow_each_working_set(monkeypatch):
    """A batch of six with one problem too slow for the budget, solved as the tuning does (100-iteration chunks, warm
    state carried): the five others converge and match their solves one at a time. Before session 13 no set grew
    while the slow one ran, so every problem ended unconverged and restricted to its start set."""
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)  # 40 features: the sets must grow several times
    rng = np.random.default_rng(5)
    n, p = 60, 40
    coords, X = rng.uniform(size=(n, 2)), rng.normal(size=(n, p))
    W = np.zeros((n, p))
    for j in range(12):
        W[:, j] = np.where(coords[:, j % 2] > 0.5, 1.0 + 0.2 * j, -0.5)
    y = (X * W).sum(1) + 0.3 * rng.normal(size=n)
    problem = cv.CVProblem.from_arrays(X, y, coords, dtype="float64", model={"scaling": "reference"})
    folds = cv.make_folds(coords, 4, "blocks", seed=0)
    lam, alpha, beta = [0.05, 0.1, 0.05, 0.02, 0.08, 0.3], [0.02, 0.01, 0.03, 0.01, 0.02, 0.001], [0.03, 0.05, 0.02, 0.04, 0.03, 0.001]
    params = [{"lambda_smooth": a, "alpha": b, "beta": c} for a, b, c in zip(lam, alpha, beta)]
    kw = dict(tol=1e-6, max_iter=3000, chunk=100)
    alone = cv.solve_fold(problem, params, folds, 1, batch=1, **kw)
    together = cv.solve_fold(problem, params, folds, 1, batch=6, **kw)
    assert alone.converged.tolist() == together.converged.tolist() == [True] * 5 + [False]
    for b in range(5):
        scale = np.abs(alone.W[:, b]).max()
        np.testing.assert_allclose(together.W[:, b], alone.W[:, b], rtol=0, atol=1e-3 * scale)
