"""A target's search ends after a round in which a yardstick beats even its best trial so far by more than their
paired SE (s3r.tune.study.stop_reason): its verdict is "no effect", and the later rounds would refine around that.
Targets of one chunk stop on their own; the others go on in the same batched solves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s3r import tune
from s3r.errors import S3RInputError
from s3r.io import RegressionData
from s3r.simulate import simulate


def _data():
    """One design, two targets: a signal with effects comparable to the noise, and a smooth spatial pattern unrelated
    to the features (the strong layer genes of DLPFC behave so: their own spatial trend beats every trial)."""
    sim = simulate("three_regions", sigma=1.0, n_spots=200, n_features=15, seed=6)
    s = np.einsum("np,np->n", sim.X, sim.W)
    rng = np.random.default_rng(0)
    xy = (sim.coords - sim.coords.min(0)) / np.ptp(sim.coords, axis=0)
    field = np.sin(3.0 * xy[:, 0] + 1.0) + np.cos(4.0 * xy[:, 1])
    ys = {"signal": 1.0 + (s - s.mean()) / s.std() + 0.7 * rng.normal(size=sim.n_spots),
          "pattern": 2.0 + field / field.std() + 0.5 * rng.normal(size=sim.n_spots)}
    return {name: RegressionData(X=sim.X, y=y, coords=sim.coords, spot_ids=sim.spot_ids, feature_names=sim.feature_names,
                                 target_name=name) for name, y in ys.items()}


def _problems(config):
    return {name: tune.make_problem(data, config) for name, data in _data().items()}


def test_the_pattern_target_of_a_chunk_stops_after_its_first_round_and_the_signal_goes_on():
    config = tune.resolve_config({"n_trials": 20, "rounds": 2, "folds": 3, "blocks_per_fold": 2, "seed": 0})
    problems = _problems(config)
    results = {name: [] for name in problems}
    for r in range(2):  # the chunk jobs' steps: suggest per target, every fold of both targets in one batch, tell
        trials = {name: tune.suggest(config, results[name]) for name in problems}
        folds = [tune.evaluate_fold_targets(problems, config, trials, k)[0] for k in range(3)]
        for name in problems:
            results[name].append(tune.tell(trials[name], [f[name] for f in folds]))
    pattern, signal = results["pattern"], results["signal"]
    assert len(signal[1]["trials"]) == 10 and "stopped" not in signal[1]
    assert pattern[1]["trials"] == [] and pattern[1]["stopped"].startswith("search stopped after round 1 of 2")
    # the stopped round still records the yardstick on the same folds
    assert pattern[1]["null"] == pattern[0]["null"]
    chosen = {name: tune.select(docs, config) for name, docs in results.items()}
    assert chosen["signal"]["effect_found"] is True and chosen["signal"]["n_trials"] == 20 and chosen["signal"]["search_stopped"] is None
    assert chosen["pattern"]["effect_found"] is False and chosen["pattern"]["n_trials"] == 10
    assert chosen["pattern"]["verdict"].startswith(tune.NO_EFFECT) and chosen["pattern"]["verdict"].endswith(pattern[1]["stopped"])
    # stop_early off: every round runs
    off = tune.resolve_config({**config, "stop_early": False})
    assert len(tune.suggest(off, results["pattern"][:1])["trials"]) == 10


def test_stop_early_must_be_a_boolean():
    with pytest.raises(S3RInputError, match="stop_early must be true or false"):
        tune.resolve_config({"stop_early": "yes"})


def test_s3r_tune_all_rounds_turns_the_early_stop_off():
    from s3r.cli import build_parser
    from s3r.cli.tune import build_config

    base = ["tune", "--x", "x.csv", "--y", "y.csv", "--coords", "c.csv", "--out", "out"]
    assert tune.resolve_config(build_config(build_parser().parse_args(base)))["stop_early"] is True
    assert tune.resolve_config(build_config(build_parser().parse_args([*base, "--all-rounds"])))["stop_early"] is False


def test_a_stopped_targets_earlier_states_are_not_gathered():
    """A stopped target has no trials to start, so its earlier fold states take no part in the warm start: a store
    that would be refused as another problem's (the wrong number of spots) passes, its record holds the yardsticks."""
    config = tune.resolve_config({"n_trials": 4, "rounds": 2, "folds": 2, "seed": 0})
    problem = _problems(config)["pattern"]
    stopped = {"format": "s3r-tune/1", "round": 1, "distributions": {}, "trials": [], "stopped": "stopped after round 1"}
    store = {"numbers": np.arange(2), "log_params": np.zeros((2, 3)), "W": np.zeros((7, 2, 15), dtype=np.float32),
             "data_dual": np.zeros((7, 2), dtype=np.float32), "step": np.ones(2)}
    results, states = tune.evaluate_fold_targets({"t": problem}, config, {"t": stopped}, 0, warm={"t": [store]})
    assert results["t"]["trials"] == [] and np.isfinite(results["t"]["null_loss"])
    assert states["t"]["W"].shape == (problem.n_spots, 0, 15)
    # the same through s3r tune's path (tune.evaluate_fold): a stopped round reads none of its earlier state files
    missing = [Path("/nonexistent/fold_0.npz")]
    assert tune.evaluate_fold(None, config, stopped, 0, warm_from=missing, problem=problem)["trials"] == []


def test_run_search_says_once_that_the_later_rounds_did_not_run(tmp_path):
    """The progress of a stopped search: round 1's folds, then one line naming the rounds not run and why — not
    "round 3/3, fold 5/5 done" for rounds whose folds solved nothing (as `s3r tune` printed on DLPFC PCP4)."""
    lines = []
    best = tune.run_search(_data()["pattern"], {"n_trials": 4, "rounds": 3, "folds": 2, "seed": 0}, tmp_path, progress=lines.append)
    assert best["effect_found"] is False and best["search_stopped"].startswith("search stopped after round 1 of 3")
    assert [line.split(" done (")[0] for line in lines[:2]] == ["round 1/3, fold 1/2", "round 1/3, fold 2/2"]
    assert lines[2:] == [f"rounds 2–3 of 3 not run: {best['search_stopped']}"]
