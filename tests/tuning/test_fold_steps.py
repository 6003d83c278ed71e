"""A fold's chunked solves keep each problem's balanced step when fresh problems join its batch (issue 13).

The tuning solves a fold in 100-iteration chunks; a problem left unconverged goes back to the front of the queue and
its next batch is filled with fresh trials. Until session 20 one fresh problem (no step yet) made the whole batch
start again from the initial steps, throwing away the continuing problems' step balancing at every chunk: a round-0
DLPFC fold job took 39,220 problem-iterations where a batch that kept the steps took 28,440.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s3r import cv, tune
from s3r.errors import S3RInputError
from s3r.solver import solve_batch


def problem(n: int = 150, p: int = 12, seed: int = 3):
    rng = np.random.default_rng(seed)
    coords, X = rng.uniform(size=(n, 2)), rng.normal(size=(n, p))
    W = np.where(coords[:, :1] > 0.5, 1.0, -0.5) * (np.arange(p) < 4)
    y = (X * W).sum(1) + 0.5 * rng.normal(size=n)
    return X, y, coords


def test_a_fresh_problem_does_not_reset_the_warm_steps_of_the_others():
    X, y, coords = problem()
    prob = cv.CVProblem.from_arrays(X, y, coords, dtype="float64")
    kw = dict(smooth="tv", operator=prob.operator, lambda_smooth=[0.05, 0.2], alpha=[0.01, 0.02], beta=[0.01, 0.02], dtype="float64",
              working_set=False, coarsen=False, prune_zeros=False)
    fresh = solve_batch(prob.X, np.column_stack([prob.y, prob.y]), max_iter=5, **kw)
    warm = np.array([7.5 * fresh.step[0], np.nan])  # problem 0 continues with a balanced step; problem 1 has none yet
    mixed = solve_batch(prob.X, np.column_stack([prob.y, prob.y]), max_iter=5, step0=warm, **kw)
    assert mixed.step[0] == 7.5 * fresh.step[0]  # five iterations: no balancing yet, the step is the one passed
    assert mixed.step[1] == fresh.step[1]  # the fresh one starts at its own initial step
    assert np.isfinite(np.asarray(mixed.W)).all()


def test_a_batch_of_mixed_problems_costs_what_its_problems_cost_one_at_a_time():
    """Twelve trials solved as the tuning does (100-iteration chunks, unconverged problems back to the front of the
    queue), in batches of four — every batch after the first mixes continuing and fresh problems — and one at a time
    (no mixing). The batches must cost no more iterations than the single solves (on the old code: 8,830 against
    7,930, +11 %) and reach the same held-out losses."""
    X, y, coords = problem(n=300, p=12, seed=4)
    prob = cv.CVProblem.from_arrays(X, y, coords, dtype="float64")
    folds = cv.make_folds(coords, 4, "random", seed=0)
    rng = np.random.default_rng(1)
    params = [{"lambda_smooth": float(a), "alpha": float(b), "beta": float(c)} for a, b, c in 10.0 ** rng.uniform(-2, 0.5, size=(12, 3))]
    kw = dict(tol=1e-5, max_iter=4000, chunk=100)
    mixed = cv.solve_fold(prob, params, folds, 0, batch=4, **kw)
    single = cv.solve_fold(prob, params, folds, 0, batch=1, **kw)
    assert mixed.converged.all() and single.converged.all()
    assert mixed.iterations.sum() <= 1.02 * single.iterations.sum()
    loss = lambda s: cv.fold_losses(prob, s, folds, 0, "graph")  # noqa: E731
    np.testing.assert_allclose(loss(mixed), loss(single), rtol=1e-4)


def test_a_chunk_too_short_for_the_step_balancing_is_refused():
    """The PDHG balances its steps at every 50th iteration of a call; 40-iteration chunks never got there and took
    2.2× the iterations of 100-iteration ones on the problem above, so the setting is refused with its reason."""
    with pytest.raises(S3RInputError, match=r"chunk ≥ 50 .*chunk 40.*never reaches the solver's step balancing"):
        tune.resolve_config({"solver": {"chunk": 40}})
    assert tune.resolve_config({"solver": {"chunk": 50}})["solver"]["chunk"] == 50
    from s3r.solver import primal_dual

    assert tune.space.MIN_CHUNK == primal_dual.CHECK_EVERY * primal_dual.READ_EVERY  # the balancing's period, one number


def test_an_unconverged_problem_takes_its_own_edge_dual_into_its_next_chunk(monkeypatch):
    """A fold keeps an edge dual only for the problems that go on (session 28: no full-batch dual array); each chunk
    of a continuing problem must start from the dual its previous chunk ended with, also when its batch mates change."""
    import s3r.cv.solve as solve_mod

    X, y, coords = problem(n=200, p=8, seed=5)
    prob = cv.CVProblem.from_arrays(X, y, coords, dtype="float64")
    folds = cv.make_folds(coords, 4, "random", seed=0)
    params = [{"lambda_smooth": lam, "alpha": 0.01, "beta": 0.01} for lam in (0.05, 0.3, 1.0)]
    calls = []
    real = solve_mod.solve_batch

    def recording(X, Y, **kw):
        dual0 = None if kw["dual0"] is None else kw["dual0"].clone()
        res = real(X, Y, **kw)
        calls.append({"Y": np.asarray(Y).copy(), "dual0": dual0, "dual": None if res.dual is None else res.dual.clone(),
                      "converged": np.asarray(res.converged, dtype=bool)})
        return res

    monkeypatch.setattr(solve_mod, "solve_batch", recording)
    solved = cv.solve_fold(prob, params, folds, 0, tol=1e-5, max_iter=20_000, chunk=60, batch=2)
    assert solved.converged.all() and len(calls) >= 3
    carried = 0
    for before, after in zip(calls, calls[1:]):
        # the queue puts the unconverged problems of a batch first in the next one, in their order
        going_on = np.flatnonzero(~before["converged"])
        for j_after, j_before in enumerate(going_on):
            assert np.array_equal(after["Y"][:, j_after], before["Y"][:, j_before])
            assert torch.equal(after["dual0"][:, j_after], before["dual"][:, j_before])
            carried += 1
    assert carried >= 2
