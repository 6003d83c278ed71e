"""The model form as a tuning choice (s3r.tune.variants): the smoothness mode the data support is the one chosen."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s3r import tune
from s3r.errors import S3RInputError
from s3r.io import RegressionData
from s3r.simulate import simulate
from s3r.tune.variants import SMOOTH_MODES, model_variants, pick_variant

CHOICE = {"n_trials": 8, "rounds": 2, "folds": 3, "blocks_per_fold": 2, "model": {"smooth": ["tv", "quadratic"]}}


def _data(truth: str, noise: float) -> RegressionData:
    """Two of six features act; their maps are a smooth gradient over the section or constant per region."""
    sim = simulate("three_regions", sigma=1.0, n_spots=200, n_features=11, seed=3)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(sim.n_spots, 6))
    xy = (sim.coords - sim.coords.min(0)) / np.ptp(sim.coords, axis=0)
    W = np.zeros_like(X)
    if truth == "gradient":
        W[:, 0], W[:, 1] = 2.0 * xy[:, 0] - 1.0, 1.5 * xy[:, 1]
    else:
        regions = np.asarray(sim.regions)
        first, second, *_, last = np.unique(regions)
        W[:, 0] = np.where(regions == first, 1.5, np.where(regions == second, -1.0, 0.0))
        W[:, 1] = np.where(regions == last, 1.5, 0.0)
    y = np.einsum("np,np->n", X, W) + noise * rng.normal(size=sim.n_spots)
    return RegressionData(X=X, y=y, coords=sim.coords, spot_ids=sim.spot_ids, feature_names=[f"f{j}" for j in range(6)],
                          target_name=truth)


# regions at noise 0.5: a first-round-only screen (4 points) picked quadratic here (0.81 vs tv 0.90); the full
# searches pick tv (0.50 vs 0.63)
@pytest.mark.parametrize("truth, noise, expected", [("gradient", 1.0, "quadratic"), ("regions", 0.5, "tv")])
def test_the_search_picks_the_smoothness_the_truth_has(truth, noise, expected, tmp_path):
    best = tune.run_search(_data(truth, noise), CHOICE, tmp_path, workers=1)
    choice = best["model_choice"]
    assert choice["chosen"] == expected, choice
    assert best["smooth"] == expected and best["model"]["smooth"] == expected
    losses = choice["best_cv_loss"]
    assert losses[expected] < min(v for k, v in losses.items() if k != expected)
    assert best["best_cv_loss"] == losses[expected]
    # the chosen form's rounds are the search's rounds
    for r in (0, 1):
        own = json.loads((tmp_path / "forms" / expected / f"round_{r}" / "results.json").read_text())
        assert json.loads((tmp_path / f"round_{r}" / "results.json").read_text()) == own
    assert json.loads((tmp_path / "model_choice.json").read_text())["chosen"] == expected
    assert json.loads((tmp_path / "best_params.json").read_text())["params"]["smooth"] == expected
    assert json.loads((tmp_path / "config.json").read_text())["model"]["smooth"] == expected
    assert len(json.loads((tmp_path / "round_1" / "results.json").read_text())["trials"]) == 4
    assert (tmp_path / "folds.tsv").read_text() == (tmp_path / "forms" / expected / "folds.tsv").read_text()


def test_forms_in_listed_order_and_the_first_wins_a_tie():
    config = tune.resolve_config({"model": {"smooth": ["quadratic", "tv"], "spatial_intercept": [False, True]}})
    labels = [label for label, _ in model_variants(config)]
    assert labels == ["quadratic", "quadratic+spatial_intercept", "tv", "tv+spatial_intercept"]
    assert all(not isinstance(c["model"]["smooth"], list) for _, c in model_variants(config))
    done = lambda *values: [{"trials": [{"state": "COMPLETE", "value": v} for v in values]}]  # noqa: E731
    assert pick_variant({"tv": done(0.5, 0.7), "quadratic": done(0.6, 0.5)})[0] == "tv"
    assert pick_variant({"quadratic": done(0.6, 0.5), "tv": done(0.5, 0.7)})[0] == "quadratic"
    assert pick_variant({"tv": done(0.9), "quadratic": done(0.4)})[0] == "quadratic"


def test_form_lists_are_checked_and_only_run_search_screens():
    for bad in ({"smooth": []}, {"smooth": ["tv", "tv"]}, {"smooth": ["tv", "cubic"]}, {"spatial_intercept": [False, "yes"]},
                {"k": []}, {"k": [7, 7]}, {"k": [7, 0]}, {"k": 2.5}, {"k": [True]}):
        with pytest.raises(S3RInputError, match="tuning model"):
            tune.resolve_config({"model": bad})
    assert tune.resolve_config({"model": {"smooth": ["quadratic"]}})["model"]["smooth"] == ["quadratic"]
    sim = simulate("three_regions", sigma=1.0, n_spots=60, n_features=11, seed=1)
    data = RegressionData(X=sim.X, y=sim.y, coords=sim.coords, spot_ids=sim.spot_ids, feature_names=sim.feature_names, target_name="y")
    assert tune.make_problem(data, {"model": {"smooth": ["quadratic"]}}).smooth == "quadratic"  # one form: unwrapped
    with pytest.raises(S3RInputError, match="only run_search"):
        tune.make_problem(data, {"model": {"smooth": ["tv", "quadratic"]}})


def test_the_listed_modes_are_the_solvers():
    from s3r.solver.batch import SMOOTH_MODES as SOLVER_MODES

    assert SMOOTH_MODES == SOLVER_MODES


def test_the_graph_neighbourhood_is_a_form_too(tmp_path):
    """k listed: one full search per graph (its own graph in every fold), the label names k, the winner's k goes on."""
    config = tune.resolve_config({"model": {"smooth": "quadratic", "k": [4, 12]}})
    labels = [label for label, _ in model_variants(config)]
    assert labels == ["quadratic+k4", "quadratic+k12"]
    assert [c["model"]["k"] for _, c in model_variants(config)] == [4, 12]
    # one k: labels as before (directories of existing searches keep their names)
    assert [label for label, _ in model_variants(tune.resolve_config({"model": {"smooth": ["tv", "quadratic"]}}))] == ["tv", "quadratic"]
    data = _data("gradient", 1.0)
    best = tune.run_search(data, {**CHOICE, "model": {"smooth": "quadratic", "k": [4, 12]}}, tmp_path, workers=1)
    choice = best["model_choice"]
    assert set(choice["best_cv_loss"]) == {"quadratic+k4", "quadratic+k12"}
    chosen_k = 4 if choice["chosen"] == "quadratic+k4" else 12
    assert best["model"]["k"] == chosen_k
    # each form's trials were scored on its own graph: the same parameters give different held-out losses
    loss = {}
    for label in choice["best_cv_loss"]:
        doc = json.loads((tmp_path / "forms" / label / "round_0" / "results.json").read_text())
        loss[label] = [t["value"] for t in doc["trials"]]
    assert loss["quadratic+k4"] != loss["quadratic+k12"]
    other = next(label for label in loss if label != choice["chosen"])
    assert choice["best_cv_loss"][choice["chosen"]] <= choice["best_cv_loss"][other]
