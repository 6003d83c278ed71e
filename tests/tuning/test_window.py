"""Large sections are tuned on a window of them: which spots, in whose search box, and what the outputs say."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from s3r import tune
from s3r.errors import S3RInputError
from s3r.graph import SpatialGraph, knn_graph
from s3r.graph.window import window_spots
from s3r.io import RegressionData
from s3r.simulate import simulate
from s3r.tune.window import on_window, section_scales, window_index


def _grid(side: int) -> np.ndarray:
    return np.stack(np.meshgrid(np.arange(side), np.arange(side)), axis=-1).reshape(-1, 2).astype(float)


def test_the_window_is_one_disc_around_the_centre():
    xy = _grid(60)  # 3,600 spots
    one = window_spots(xy, 800)
    assert one.size == 800 and np.all(np.diff(one) > 0)
    assert knn_graph(xy[one], k=4).components()[0] == 1  # one piece of tissue
    distance = np.linalg.norm(xy - xy.mean(axis=0), axis=1)
    outside = np.setdiff1d(np.arange(len(xy)), one)
    assert distance[one].max() <= distance[outside].min() + 1e-12  # the 800 spots nearest the centroid
    assert np.array_equal(window_spots(xy, 5000), np.arange(len(xy)))  # a section smaller than the window


def test_subgraph_keeps_the_edges_inside_with_their_weights():
    rng = np.random.default_rng(0)
    edges = np.array([(i, j) for i in range(30) for j in range(i + 1, 30) if rng.random() < 0.2])
    graph = SpatialGraph(30, edges, rng.random(len(edges)) + 0.5)
    nodes = np.sort(rng.choice(30, 12, replace=False))
    sub = graph.subgraph(nodes)
    expected = {(int(np.searchsorted(nodes, a)), int(np.searchsorted(nodes, b))): w
                for (a, b), w in zip(graph.edges, graph.weights) if a in nodes and b in nodes}
    assert sub.n_nodes == 12 and sub.n_edges == len(expected) > 0
    assert {tuple(e): w for e, w in zip(sub.edges.tolist(), sub.weights)} == expected


@pytest.mark.parametrize("bad", [50, True, "10000", 2.5e4])
def test_max_spots_must_be_a_whole_number_or_null(bad):
    with pytest.raises(S3RInputError, match="max_spots"):
        tune.resolve_config({"max_spots": bad})
    assert tune.resolve_config({"max_spots": None})["max_spots"] is None


def _data(n: int, seed: int = 0) -> tuple[RegressionData, object]:
    sim = simulate("three_regions", geometry="uniform", n_spots=n, n_features=12, seed=seed, design="expression", sigma=0.5)
    return RegressionData(sim.X, sim.y, sim.coords, [f"s{i}" for i in range(n)], sim.feature_names, "y"), sim


SMALL = {"n_trials": 3, "rounds": 1, "folds": 3, "solver": {"device": "cpu"}}


def test_a_section_within_max_spots_is_tuned_on_every_spot(tmp_path):
    data, _ = _data(300)
    assert window_index(data.coords, tune.resolve_config({"max_spots": 300})) is None
    best = tune.run_search(data, {**SMALL, "max_spots": 300}, tmp_path, workers=1)
    assert len(pd.read_csv(tmp_path / "folds.tsv", sep="\t")) == 300
    assert best["window"] is None and "window" not in best["verdict"]


def test_a_large_section_is_tuned_on_its_window_in_the_sections_search_box(tmp_path):
    data, _ = _data(1200)
    config = tune.resolve_config({**SMALL, "max_spots": 400})
    index = window_index(data.coords, config)
    section = section_scales(data, config, index)
    own = tune.make_problem(on_window(data, index)[0], config).natural_scales()  # (data, offset)
    assert own["lambda_smooth"] < 0.8 * section["lambda_smooth"]  # the window's own box would be another one

    best = tune.run_search(data, config, tmp_path, workers=1)
    folds = pd.read_csv(tmp_path / "folds.tsv", sep="\t")
    assert folds["spot"].tolist() == [f"s{i}" for i in index]
    assert best["window"] == {"spots": 400, "of": 1200}
    assert "window of 400 of the section's 1,200 spots, one disc around the tissue's centre" in best["verdict"]
    doc = json.loads((tmp_path / "best_params.json").read_text())
    assert doc["tuning"]["window"] == best["window"]
    assert doc["tuning"]["scales"] == pytest.approx(section)
    results = json.loads((tmp_path / "round_0" / "results.json").read_text())
    for trial in results["trials"]:  # every trial is the section's relative point times the section's scales
        for name in tune.PARAM_NAMES:
            assert trial["params"][name] == pytest.approx(trial["search"][name] * section[name])


def test_window_tuning_recovers_the_regions_of_the_whole_section(tmp_path):
    """Tuned on 1,000 of 3,000 spots (defaults otherwise), the final fit on every spot finds the three regions."""
    from s3r import S3R
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    data, sim = _data(3000, seed=1)
    best = tune.run_search(data, {"max_spots": 1000, "solver": {"device": "cpu"}}, tmp_path)
    assert best["window"]["spots"] == 1000 and best["effect_found"]
    model = S3R(**{name: best[name] for name in tune.PARAM_NAMES}).fit(data.X, data.y, data.coords)
    W = np.asarray(model.coef_)
    labels = KMeans(n_clusters=3, n_init=10, random_state=0).fit_predict(W[:, W.std(axis=0) > 0])
    assert adjusted_rand_score(sim.regions, labels) > 0.8


def test_s3r_tune_max_spots_flag():
    from s3r.cli import build_parser
    from s3r.cli.tune import build_config

    base = ["tune", "--x", "x.csv", "--y", "y.csv", "--coords", "c.csv", "--out", "out"]
    settings = lambda *extra: tune.resolve_config(build_config(build_parser().parse_args([*base, *extra])))  # noqa: E731
    assert settings()["max_spots"] == 10_000
    assert settings("--max-spots", "2500")["max_spots"] == 2500
    assert settings("--max-spots", "0")["max_spots"] is None  # every spot
    with pytest.raises(S3RInputError, match="max_spots"):
        settings("--max-spots", "50")
