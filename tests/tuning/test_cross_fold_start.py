"""A round's later folds start from its first fold's solutions of the same trials (s3r.tune.files.warm_state_paths):
the maps differ only by which fold was held out, so they are much closer than any earlier trial on the same fold."""

from __future__ import annotations

import numpy as np

from s3r import tune
from s3r.io import RegressionData
from s3r.simulate import simulate

CONFIG = {"n_trials": 10, "rounds": 1, "folds": 5, "seed": 3}  # the default solver: tol 1e-2, at most 500 iterations


def test_warm_state_paths_name_the_earlier_rounds_and_the_first_fold(tmp_path):
    assert tune.warm_state_paths(tmp_path, 0, 0) == []
    assert tune.warm_state_paths(tmp_path, 0, 2) == [tmp_path / "round_0" / "fold_0.npz"]
    assert tune.warm_state_paths(tmp_path, 2, 0) == [tmp_path / "round_0" / "fold_0.npz", tmp_path / "round_1" / "fold_0.npz"]
    assert tune.warm_state_paths(tmp_path, 1, 3) == [tmp_path / "round_0" / "fold_3.npz", tmp_path / "round_1" / "fold_0.npz"]


def _data():
    sim = simulate("three_regions", n_spots=800, n_features=25, seed=2, design="expression", sigma=0.5)
    n, p = sim.X.shape
    return RegressionData(X=sim.X, y=sim.y, coords=sim.coords, spot_ids=[f"s{i}" for i in range(n)],
                          feature_names=[f"f{j}" for j in range(p)], target_name="y")


def test_a_later_fold_started_from_the_first_is_cheaper_and_no_less_accurate(tmp_path):
    """Each trial starts from itself on fold 0 (warm_from = its own number), its data dual recomputed on this fold's
    training spots. Against solves to tol 1e-4 (the trials those reach), its held-out losses are at least as close as a
    cold solve's at the tuning's tolerance (here: mean error 0.5 % against 1.9 %; one cold solve stopped 8.7 % off), and
    it takes at most three quarters of the cold iterations (1,150 against 1,880)."""
    data = _data()
    problem = tune.make_problem(data, CONFIG)
    rd = tune.round_dir(tmp_path, 0)
    trials = tune.suggest(CONFIG, [], rd / "trials.json")
    tune.evaluate_fold(None, CONFIG, trials, 0, rd / "fold_0.json", problem=problem)
    cold = tune.evaluate_fold(None, CONFIG, trials, 1, tmp_path / "cold.json", problem=problem)["trials"]
    warm = tune.evaluate_fold(None, CONFIG, trials, 1, rd / "fold_1.json", problem=problem,
                              warm_from=tune.warm_state_paths(tmp_path, 0, 1))["trials"]
    tight = {**CONFIG, "solver": {"tol": 1e-4, "max_iter": 5000, "chunk": 5000}}
    ref = tune.evaluate_fold(None, tight, trials, 1, tmp_path / "ref.json", problem=problem)["trials"]
    assert all(t["warm_from"] == t["number"] for t in warm if t["iterations"] > 0)
    known = [b for b, t in enumerate(ref) if t["converged"] and t["iterations"] > 0]
    assert len(known) >= 6, ref
    error = lambda trials: np.mean([abs(trials[b]["loss"] / ref[b]["loss"] - 1) for b in known])  # noqa: E731
    assert error(warm) <= error(cold), (error(warm), error(cold))
    its = lambda trials: sum(trials[b]["iterations"] for b in known)  # noqa: E731
    assert its(warm) <= 0.75 * its(cold), (its(warm), its(cold))
