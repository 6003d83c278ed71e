"""The workflow's tuning jobs on a section larger than tune.max_spots: every fold job searches the same window, the
choice says so, and the final fit (and its start) is the whole section's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from s3r import tune
from s3r.graph import knn_graph
from s3r.preprocess import PreparedSample
from s3r.simulate import simulate
from s3r.tune.window import section_scales, window_index
from s3r.workflow.tuning import evaluate_chunk, fit_chunk, select_chunk, suggest_chunk, tell_chunk

SETTINGS = {"n_trials": 2, "rounds": 1, "folds": 2, "seed": 1, "max_spots": 300, "solver": {"device": "cpu"}}


def test_chunk_jobs_tune_on_the_window_and_fit_every_spot(tmp_path):
    sim = simulate("three_regions", geometry="uniform", n_spots=700, n_features=12, seed=4, design="expression", sigma=0.5)
    other = sim.y[::-1].copy()
    prepared = PreparedSample(X=sim.X, Y=np.column_stack([sim.y, other]), coords=sim.coords, spot_ids=[f"s{i}" for i in range(700)],
                              feature_names=sim.feature_names, target_names=["a", "b"])
    graph = knn_graph(sim.coords, k=7)
    targets = ["a", "b"]
    trials = tmp_path / "trials.json"
    suggest_chunk(SETTINGS, targets, [], trials)
    folds = []
    for k in range(2):
        folds.append(tmp_path / f"fold_{k}.json")
        evaluate_chunk(prepared, graph, SETTINGS, targets, trials, k, warm_from=[], out=folds[-1], state_out=tmp_path / f"fold_{k}.npz")
    config = tune.resolve_config(SETTINGS)
    index = window_index(sim.coords, config)
    states = [tune.read_fold_state(tmp_path / "fold_0.npz", f"t{i}.") for i in range(2)]
    assert states[0]["W"].shape[0] == states[1]["W"].shape[0] == 300  # the window's spots, not the section's 700
    doc = json.loads(folds[0].read_text())["targets"]["a"]
    assert doc["window"] == {"spots": 300, "of": 700}
    assert doc["scales"] == section_scales(prepared.regression_data("a"), config, index, graph=graph)  # the section's box
    results = tmp_path / "results.json"
    tell_chunk(trials, folds, targets, results)
    select_chunk(SETTINGS, {"smooth": "tv"}, targets, [results], {(0, k): tmp_path / f"fold_{k}.npz" for k in range(2)}, "s",
                 tmp_path / "tune", trials_table=tmp_path / "trials.tsv")
    best = json.loads((tmp_path / "tune" / "a" / "best_params.json").read_text())
    assert best["tuning"]["window"]["spots"] == 300 and "window of 300 of the section's 700 spots" in best["tuning"]["verdict"]
    fit_chunk(prepared, graph, targets, tmp_path / "tune", tmp_path / "fits", sample="s", device="cpu", inputs={})
    coef = pd.read_csv(tmp_path / "fits" / "a" / "coefficients.csv", index_col=0)
    assert coef.shape == (12, 700)  # fitted on every spot, from a cold start (the window's fold maps do not fit it)


def test_fold_jobs_are_sized_by_the_window(monkeypatch):
    from s3r.workflow import chunks

    monkeypatch.setattr(chunks, "problem_size", lambda spec, config: (100_000, 25))
    spec = None  # problem_size is the only reader of the sheet row here
    windowed = {"tune": {"enabled": True}}  # max_spots: the default 10,000
    every = {"tune": {"enabled": True, "max_spots": None}}
    assert chunks.targets_per_job(windowed, spec) == chunks.MEMORY_BUDGET // (10_000 * 25 * 10 * chunks.BYTES_PER_ENTRY)
    assert chunks.targets_per_job(every, spec) == max(1, chunks.MEMORY_BUDGET // (100_000 * 25 * 10 * chunks.BYTES_PER_ENTRY))
    fold = chunks.chunk_resources("tune_fold", windowed, spec, 4)
    assert fold == chunks.job_resources("tune_fold", 10_000, 25, 4 * 10)
    assert chunks.chunk_resources("fit_final", windowed, spec, 4) == chunks.job_resources("fit_final", 100_000, 25, 4)
