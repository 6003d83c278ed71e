"""The one-SE rule sized by the features a map uses (selection ``one_se_features``) beside the default sized by pieces."""

from __future__ import annotations

import numpy as np
import pytest

from s3r import cv, tune
from s3r.errors import S3RInputError
from s3r.simulate import simulate
from s3r.tune.files import read_json


def trial(number, value, params, pieces, features, se=0.5):
    return {"number": number, "round": 0, "params": params, "state": "COMPLETE", "value": value, "std": 2 * se, "se": se,
            "fold_losses": [value] * 4, "converged": [True] * 4, "iterations": [10] * 4, "pieces": pieces, "features": features}


P = {"lambda_smooth": 0.01, "alpha": 0.01, "beta": 0.01}


def results():
    """Trial 0 is best; 1 and 2 are within its SE (10 + 0.5); 3 is outside it, with the fewest features of all.
    Pieces and features disagree: 1 is one dense map cut coarsely (5 features, 60 pieces in all), 2 uses 40
    features, each a single constant piece over the tissue (40 pieces)."""
    return [{"round": 0, "trials": [
        trial(0, 10.0, P, pieces=300.0, features=80.0),
        trial(1, 10.3, {**P, "lambda_smooth": 0.5}, pieces=60.0, features=5.0),
        trial(2, 10.4, {**P, "alpha": 0.5}, pieces=40.0, features=40.0),
        trial(3, 11.0, {**P, "beta": 0.9}, pieces=2.0, features=1.0),
    ]}]


def test_the_feature_count_rule_hands_on_the_map_with_fewest_features():
    assert tune.select(results(), {})["trial"] == 2  # the default: fewest pieces within one SE
    chosen = tune.select(results(), {"selection": "one_se_features"})
    assert chosen["trial"] == 1 and chosen["selection"] == "one_se_features"
    assert chosen["map_features"] == 5.0 and chosen["map_pieces"] == 60.0 and chosen["best_trial"] == 0
    assert tune.select(results(), {"selection": "best"})["trial"] == 0


def test_equal_feature_counts_go_to_fewer_pieces_then_older_files_last():
    docs = results()
    docs[0]["trials"][2]["features"] = 5.0  # now 1 and 2 tie on features: fewer pieces (trial 2) wins
    assert tune.select(docs, {"selection": "one_se_features"})["trial"] == 2
    docs[0]["trials"][1]["features"] = docs[0]["trials"][2]["features"] = None  # not recorded: counted as infinite
    assert tune.select(docs, {"selection": "one_se_features"})["trial"] == 0


def test_config_accepts_the_new_rule_and_names_the_choices_in_its_error():
    assert tune.resolve_config({"selection": "one_se_features"})["selection"] == "one_se_features"
    assert tune.resolve_config({})["selection"] == "one_se"  # the default is unchanged
    with pytest.raises(S3RInputError, match="selection must be one of best, one_se, one_se_features; got 'features'"):
        tune.resolve_config({"selection": "features"})


def test_map_features_counts_columns_above_the_relative_tolerance():
    W = np.zeros((6, 3, 4))
    W[:, 1, 0] = 1.0
    W[2, 1, 3] = 1e-5  # below 1e-3 × the map's largest |coefficient|: the early-stopped solve's dust
    W[:, 2, :2] = 2.0
    W[0, 2, 2] = -0.5
    assert cv.map_features(W).tolist() == [0, 1, 3]


def test_a_search_records_the_features_its_maps_use(tmp_path):
    sim = simulate("three_regions", sigma=0.5, n_spots=80, n_features=12, seed=2)
    from s3r.io import RegressionData

    data = RegressionData(sim.X, sim.y, sim.coords, sim.spot_ids, sim.feature_names, "target")
    config = {"n_trials": 4, "rounds": 1, "folds": 2, "seed": 3, "selection": "one_se_features", "solver": {"tol": 1e-3, "max_iter": 300}}
    best = tune.run_search(data, config, tmp_path)
    doc = read_json(tmp_path / "round_0" / "results.json")
    folds = [read_json(tmp_path / "round_0" / f"fold_{k}.json") for k in range(2)]
    for b, t in enumerate(doc["trials"]):
        per_fold = [f["trials"][b]["features"] for f in folds]
        assert all(0 <= v <= 12 for v in per_fold) and t["features"] == pytest.approx(np.mean(per_fold))
    assert best["selection"] == "one_se_features" and best["map_features"] is not None
