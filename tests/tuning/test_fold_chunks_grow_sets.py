"""The tuning's chunked fold solves grow their working sets even when no chunk converges (issue 11, session 16)."""

from __future__ import annotations

import numpy as np

import s3r.solver.batch as batch_mod
import s3r.solver.working_set as ws_mod
from s3r import cv

from test_fold_batches import piecewise_problem


def _problem():
    """300 spots, 40 features, 12 of them with a map that changes across the section."""
    return piecewise_problem(300, seed=11, slope=0.1, low=-0.6)


def test_a_fold_solved_in_chunks_that_never_converge_grows_its_set_to_the_support(monkeypatch):
    """Chunks of 10 iterations at tol 1e-6: no chunk's call ends converged, as at 10⁵ spots with the tuning's 100.
    Each chunk restarts from W's non-zero columns; on main a set grown inside a call (zero columns in W) was dropped
    by the next, and the fold ended restricted to its 2-feature start set. Now every chunk checks what its warm start left out, so the
    maps reach the support of the unrestricted optimum; in longer chunks they converge to that optimum itself."""
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    problem, folds = _problem()
    params = [{"lambda_smooth": 0.02, "alpha": 0.002, "beta": 0.005}, {"lambda_smooth": 0.005, "alpha": 0.0005, "beta": 0.001}]
    starts = []
    real = ws_mod.solve_working_set

    def spy(*args, **kwargs):
        res = real(*args, **kwargs)
        starts.append(bool(np.any(res.converged)))
        return res

    monkeypatch.setattr(batch_mod, "solve_working_set", spy)
    short = cv.solve_fold(problem, params, folds, 2, tol=1e-6, max_iter=300, chunk=10)
    assert starts and not any(starts)  # no chunk converged: the 10⁵-spot situation
    with monkeypatch.context() as m:
        m.setattr(batch_mod, "use_working_set", lambda *a: False)  # every feature on every iteration
        full = cv.solve_fold(problem, params, folds, 2, tol=1e-9, max_iter=20_000, chunk=20_000)
    assert full.converged.all()
    for b in range(len(params)):
        support = np.flatnonzero(np.abs(full.W[:, b]).max(0) > 1e-6)
        assert 2 < support.size < 40
        kept = np.flatnonzero(np.abs(short.W[:, b]).max(0) > 0)
        assert set(support) <= set(kept), f"problem {b}: support {support} not in the map's features {kept}"

    # the tuning's chunk of 100: the sets that the chunks' checks grew lead to the exact optimum (chunks of 10 at
    # 1e-6 never converge at all: each call spends its budget at COARSE_TOL before the tight solve)
    long = cv.solve_fold(problem, params, folds, 2, tol=1e-6, max_iter=20_000, chunk=100)
    assert long.converged.all()
    for b in range(len(params)):
        scale = np.abs(full.W[:, b]).max()
        np.testing.assert_allclose(long.W[:, b], full.W[:, b], rtol=0, atol=1e-3 * scale)
