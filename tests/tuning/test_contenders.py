"""A fold's leading trials are converged solves: capped trials near the fold's best are solved on (session 35).

The tuning's iteration cap is a cheap first look at every trial. A trial stopped there is another model than the one its
λ, α, β define (its working set still small, its map not yet fused), and on DLPFC with 2,000 genes as features the
fold's best capped trial scored 1.054 once solved on, against 0.685 at the cap. ``tune.continue_contenders`` solves on
the capped trials within ``CONTEND_MARGIN`` of the fold's best until the head of the ranking is converged.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import s3r.solver.working_set as ws_mod
from s3r import cv, tune
from s3r.errors import S3RInputError
from s3r.tune.evaluate import CONTEND_MARGIN, continue_contenders

from test_fold_batches import piecewise_problem

PARAMS = [{"lambda_smooth": lam, "alpha": a, "beta": b} for lam, a, b in
          [(0.02, 0.002, 0.005), (0.005, 0.0005, 0.001), (0.05, 0.01, 0.02), (0.3, 0.05, 0.05), (0.01, 0.001, 0.0005), (1.0, 0.2, 0.2)]]


def _config(contend: int) -> dict:
    return tune.resolve_config({"solver": {"tol": 1e-5, "max_iter": 100, "contend_max_iter": contend, "dtype": "float64"}})


def test_capped_trials_at_the_head_of_a_fold_are_solved_on_to_their_converged_loss(monkeypatch):
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)  # sets that must grow: a capped solve holds few features
    problem, folds = piecewise_problem(300, seed=11, slope=0.1, low=-0.6)
    config = _config(20_000)
    capped = cv.solve_fold(problem, PARAMS, folds, 0, tol=1e-5, max_iter=100, chunk=100)
    assert (~capped.converged).sum() >= 3  # the situation under test: most trials stop at the cap
    solved, continued, returned = continue_contenders(problem, PARAMS, copy.deepcopy(capped), folds, 0, config)
    reference = cv.solve_fold(problem, PARAMS, folds, 0, tol=1e-5, max_iter=20_000, chunk=100)
    assert reference.converged.all()
    loss = lambda s: cv.fold_losses(problem, s, folds, 0, "graph")  # noqa: E731
    got, want, before = loss(solved), loss(reference), loss(capped)
    np.testing.assert_array_equal(returned, got)  # the losses handed to the fold record are the returned trials' own

    head = got <= got.min() + CONTEND_MARGIN * abs(got.min())
    assert solved.converged[head].all(), (got, solved.converged)  # no truncated solve leads the ranking
    assert int(np.argmin(got)) == int(np.argmin(want))  # the fold's winner is the converged ranking's winner
    np.testing.assert_allclose(got[continued], want[continued], rtol=1e-3)  # a continued trial scores its own model
    assert continued.any() and not continued[capped.converged].any()  # only capped trials are solved on
    untouched = ~continued
    np.testing.assert_array_equal(solved.W[:, untouched], capped.W[:, untouched])
    np.testing.assert_array_equal(got[untouched], before[untouched])
    assert (solved.iterations[continued] > 100).all() and (solved.iterations[untouched] == capped.iterations[untouched]).all()


def test_no_trial_is_solved_on_when_the_contenders_cap_is_off(monkeypatch):
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    problem, folds = piecewise_problem(300, seed=11, slope=0.1, low=-0.6)
    capped = cv.solve_fold(problem, PARAMS, folds, 0, tol=1e-5, max_iter=100, chunk=100)
    solved, continued, losses = continue_contenders(problem, PARAMS, copy.deepcopy(capped), folds, 0, _config(0))
    assert not continued.any() and losses is None
    np.testing.assert_array_equal(solved.W, capped.W)


def test_the_rule_is_off_by_default():
    assert tune.resolve_config({})["solver"]["contend_max_iter"] == 0


def test_a_negative_contenders_cap_is_refused():
    with pytest.raises(S3RInputError, match="contend_max_iter"):
        _config(-1)


def test_a_fold_job_records_which_trials_it_solved_on(monkeypatch):
    """The fold job (``tune.evaluate_fold``, what ``s3r tune`` and the workflow's tune_fold run) applies the rule with the
    setting on, records ``continued`` per trial, and leaves the record's other fields as the solves give them."""
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    problem, folds = piecewise_problem(300, seed=11, slope=0.1, low=-0.6)
    base = {"folds": 4, "fold_scheme": "blocks", "n_trials": 6, "rounds": 1, "space": {
        name: {"low": 1e-4, "high": 1.0, "log": True, "relative": False} for name in ("lambda_smooth", "alpha", "beta")}}
    doc = {"round": 0, "trials": [{"number": i, "round": 0, "search": p} for i, p in enumerate(PARAMS)]}
    records = {}
    for contend in (0, 20_000):
        config = tune.resolve_config({**base, "solver": {"tol": 1e-5, "max_iter": 100, "contend_max_iter": contend, "dtype": "float64"}})
        records[contend] = tune.evaluate_fold(None, config, doc, 0, problem=problem)["trials"]
    off, on = records[0], records[20_000]
    assert not any(t["continued"] for t in off)
    assert any(t["continued"] for t in on)
    best = min(t["loss"] for t in on)
    for a, b in zip(off, on):
        if b["continued"]:
            assert not a["converged"] and b["iterations"] > a["iterations"]
        else:
            assert (a["loss"], a["iterations"], a["converged"]) == (b["loss"], b["iterations"], b["converged"])
        if b["loss"] <= best * (1 + CONTEND_MARGIN):
            assert b["converged"], b
