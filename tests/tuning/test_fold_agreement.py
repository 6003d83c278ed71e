"""Fold agreement: among maps the held-out loss cannot rank (one-SE window past the intercept-only model), the trial
whose cross-validation fold maps agree most is handed on; everywhere else the one-SE choice is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from s3r import tune
from s3r.io import write_npz
from s3r.tune.agreement import agreement

N, P, FOLDS = 90, 4, 3
P0 = {"lambda_smooth": 0.1, "alpha": 0.1, "beta": 0.1}


def blocks(rng, shift=0) -> np.ndarray:
    """A map with three spatial blocks of 30 spots (a different coefficient vector per block), plus small noise."""
    centres = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    labels = np.roll(np.repeat(np.arange(3), N // 3), shift)
    return centres[labels] + 0.02 * rng.standard_normal((N, P))


def maps_by_trial(seed=0) -> dict[int, list[np.ndarray]]:
    """Trial 0: the best loss; trial 1: the smallest map, fold maps that cut the tissue differently on every fold
    (blocks shifted by 0, 10, 20 spots and noise); trial 2: the same three blocks on every fold."""
    rng = np.random.default_rng(seed)
    return {
        0: [rng.standard_normal((N, P)) for _ in range(FOLDS)],
        1: [blocks(rng, shift=10 * k) + 0.5 * rng.standard_normal((N, P)) for k in range(FOLDS)],
        2: [blocks(rng) for _ in range(FOLDS)],
    }


def write_states(tmp_path, maps, prefix="", others=None) -> dict:
    """One round's fold_k.npz as the tuning writes them (W: spots × trials × columns); ``others``: more targets'
    arrays in the same file (the workflow's chunk files, keys prefixed t<i>.)."""
    states = {}
    for k in range(FOLDS):
        arrays = {f"{prefix}numbers": np.array(sorted(maps)), f"{prefix}W": np.stack([maps[n][k] for n in sorted(maps)], axis=1).astype(np.float32)}
        for other_prefix, other in (others or {}).items():
            arrays[f"{other_prefix}numbers"] = np.array(sorted(other))
            arrays[f"{other_prefix}W"] = np.stack([other[n][k] for n in sorted(other)], axis=1).astype(np.float32)
        states[(0, k)] = tmp_path / "round_0" / f"fold_{k}.npz"
        write_npz(states[(0, k)], **arrays)
    return states


def results(null_value: float) -> list[dict]:
    """Best 10.0 ± SE 0.5 (window to 10.5); all three trials inside it; trial 1 has the fewest pieces."""
    def trial(number, value, pieces):
        folds = [value - 0.5, value, value + 0.5]
        return {"number": number, "round": 0, "params": {**P0, "lambda_smooth": 0.1 * (number + 1)}, "state": "COMPLETE",
                "value": value, "std": 1.0, "se": 0.5, "fold_losses": folds, "converged": [True] * 3, "iterations": [10] * 3,
                "pieces": pieces, "features": 4.0}
    null = {"value": null_value, "se": 0.5, "fold_losses": [null_value - 0.5, null_value, null_value + 0.5]}
    return [{"round": 0, "trials": [trial(0, 10.0, 300.0), trial(1, 10.3, 20.0), trial(2, 10.4, 90.0)], "null": null}]


def test_agreement_is_one_for_the_same_partition_and_low_for_unrelated_maps():
    maps = maps_by_trial()
    same, k = agreement(maps[2])
    assert same == pytest.approx(1.0) and k == 3  # three blocks found by the silhouette rule, identical on every fold
    noise, _ = agreement(maps[0])
    shifted, _ = agreement(maps[1])
    assert noise < 0.2 and shifted < 0.6  # unrelated maps, and blocks moved between folds, agree far less


def test_window_past_the_intercept_only_model_hands_on_the_agreeing_trial(tmp_path):
    states = write_states(tmp_path, maps_by_trial())
    plain = tune.select(results(null_value=10.2), {})
    assert plain["trial"] == 1  # the one-SE rule: fewest pieces
    chosen = tune.select(results(null_value=10.2), {}, states=states)  # 10.0 + 0.5 > 10.2: the window reaches past it
    assert chosen["trial"] == 2 and chosen["selection_reason"].startswith("fold agreement")
    scores = chosen["fold_agreement"]
    assert set(scores) == {"0", "1", "2"} and scores["2"]["agreement"] == pytest.approx(1.0) and scores["2"]["k"] == 3
    assert max(scores, key=lambda n: scores[n]["agreement"]) == "2"
    assert chosen["effect_found"] is False and chosen["verdict"].startswith(tune.NO_EFFECT)  # the verdict stays honest
    again = tune.select(results(null_value=10.2), {}, states=states)
    assert again == chosen  # deterministic


def test_window_below_the_intercept_only_model_keeps_the_one_se_choice_exactly(tmp_path):
    states = write_states(tmp_path, maps_by_trial())
    for null_value in (10.6, 10.5):  # best + SE = 10.5: not past the yardstick
        plain = tune.select(results(null_value), {})
        with_states = tune.select(results(null_value), {}, states=states)
        assert with_states == plain and with_states["trial"] == 1 and with_states["fold_agreement"] is None
        assert with_states["selection_reason"].startswith("one standard error")
    best = tune.select(results(10.2), {"selection": "best"}, states=states)  # no window: the rule never applies
    assert best["trial"] == 0 and best["fold_agreement"] is None


def test_the_chunk_files_are_read_per_target_and_missing_states_fall_back(tmp_path):
    mine = maps_by_trial(seed=1)
    other = {n: [np.zeros((N, P)) for _ in range(FOLDS)] for n in mine}  # another target's maps in the same files
    states = write_states(tmp_path, mine, prefix="t1.", others={"t0.": other})
    assert tune.select(results(10.2), {}, states=states, state_prefix="t1.")["trial"] == 2
    states[(0, 1)].unlink()  # a fold state gone (deleted): the one-SE choice, not an error
    fallback = tune.select(results(10.2), {}, states=states, state_prefix="t1.")
    assert fallback["trial"] == 1 and fallback["fold_agreement"] is None


def test_a_search_without_an_effect_chooses_by_agreement_before_deleting_the_fold_states(tmp_path):
    """A target unrelated to the features (pure noise): the one-SE window reaches past the intercept-only model,
    run_search reads the fold maps before it deletes them, and best_params.json records the scores and the reason."""
    from s3r.io import RegressionData
    from s3r.simulate import simulate
    from s3r.tune.files import read_json

    sim = simulate("three_regions", sigma=0.5, n_spots=80, n_features=12, seed=1)
    y = np.random.default_rng(1).standard_normal(sim.n_spots)
    data = RegressionData(sim.X, y, sim.coords, sim.spot_ids, sim.feature_names, "target")
    config = {"n_trials": 6, "rounds": 1, "folds": 3, "seed": 1, "solver": {"tol": 1e-3, "max_iter": 300}}
    best = tune.run_search(data, config, tmp_path)
    recorded = read_json(tmp_path / "best_params.json")["tuning"]
    window = [t for t in read_json(tmp_path / "round_0" / "results.json")["trials"] if t["value"] <= best["best_cv_loss"] + _best_se(tmp_path)]
    assert best["best_cv_loss"] + _best_se(tmp_path) > best["null_cv_loss"]  # the case the rule is for
    scores = recorded["fold_agreement"]
    assert recorded["selection_reason"].startswith("fold agreement") and set(scores) == {str(t["number"]) for t in window}
    assert recorded["trial"] == best["trial"] == int(max(scores, key=lambda n: (scores[n]["agreement"], -int(n))))
    assert recorded["effect_found"] is False
    assert not list(tmp_path.glob("round_*/fold_*.npz"))  # the states still go at the end
    plain = tune.select(sorted(tmp_path.glob("round_*/results.json")), config)  # no states: the one-SE rule's choice
    assert plain["fold_agreement"] is None and plain["selection_reason"].startswith("one standard error")


def _best_se(out) -> float:
    from s3r.tune.files import read_json

    trials = read_json(out / "round_0" / "results.json")["trials"]
    return min(trials, key=lambda t: (t["value"], t["number"]))["se"]


def test_the_workflow_select_step_uses_the_chunk_fold_states(tmp_path):
    """tune_select (``select_chunk``) passes every target's fold maps from the chunk's state files: target "b" (the
    agreeing maps under t1.) gets the agreement choice, target "a" (window below its null) the one-SE choice."""
    import json

    from s3r.io import write_json
    from s3r.workflow.tuning import CHUNK_FORMAT, select_chunk

    mine = maps_by_trial(seed=2)
    states = write_states(tmp_path / "chunk", mine, prefix="t1.", others={"t0.": mine})
    path = tmp_path / "chunk" / "round_0" / "results.json"
    write_json({"format": CHUNK_FORMAT, "round": 0, "targets": {"a": results(10.6)[0], "b": results(10.2)[0]}}, path)
    select_chunk({}, {}, ["a", "b"], [path], states, "s", tmp_path / "targets")
    chosen = {t: json.loads((tmp_path / "targets" / t / "best_params.json").read_text())["tuning"] for t in ("a", "b")}
    assert chosen["a"]["trial"] == 1 and chosen["a"]["fold_agreement"] is None
    assert chosen["b"]["trial"] == 2 and chosen["b"]["selection_reason"].startswith("fold agreement")
    assert chosen["b"]["fold_agreement"]["2"]["agreement"] == pytest.approx(1.0)
