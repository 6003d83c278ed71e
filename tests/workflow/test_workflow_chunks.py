"""Targets in chunks: several targets of a sample solved in one batched program give what each gives alone; the
chunk plan and the job resources follow the input size; one sample × 200 targets plans at most 100 jobs."""

from __future__ import annotations

import re

import anndata
import numpy as np
import pandas as pd
import pytest
import yaml

from s3r import cv, tune
from s3r.io import RegressionData
from s3r.simulate import simulate
from s3r.workflow.chunks import (MEMORY_BUDGET, BYTES_PER_ENTRY, ONE_THREAD_SPOTS, chunk_priority, fit_threads, job_resources,
                                 plan_chunks, targets_per_job)
from s3r.workflow.samples import SampleSpec

from helpers import snakemake
NARROW = {"low": 1e-3, "high": 3e-2, "log": True, "relative": True}
CONFIG = {"n_trials": 2, "rounds": 1, "folds": 2, "seed": 3, "space": dict.fromkeys(("lambda_smooth", "alpha", "beta"), NARROW),
          "solver": {"tol": 1e-6, "max_iter": 5000, "dtype": "float64", "device": "cpu"}}


@pytest.fixture(scope="module")
def three_targets():
    """One design, three responses (different noise draws and a sign flip): the chunk of one sample."""
    sim = simulate("three_regions", sigma=0.5, n_spots=50, n_features=11, seed=2)
    rng = np.random.default_rng(0)
    ys = [sim.y, sim.y[::-1].copy() + rng.normal(size=sim.y.shape), -sim.y + 30 * rng.normal(size=sim.y.shape)]
    spots = [f"s{i}" for i in range(len(sim.y))]
    datas = {f"t{j}": RegressionData(X=sim.X, y=y, coords=sim.coords, spot_ids=spots, feature_names=[f"f{k}" for k in range(11)],
                                     target_name=f"t{j}") for j, y in enumerate(ys)}
    return datas


def test_targets_solved_together_equal_each_solved_alone(three_targets):
    config = tune.resolve_config(CONFIG)
    problems = {t: tune.make_problem(d, config) for t, d in three_targets.items()}
    trials = {t: tune.suggest(config) for t in problems}
    together, _ = tune.evaluate_fold_targets(problems, config, trials, 1)
    for t, problem in problems.items():
        alone = tune.evaluate_fold(None, config, trials[t], 1, problem=problem)
        for a, b in zip(together[t]["trials"], alone["trials"]):
            assert a["converged"] and b["converged"]
            # batch composition changes the iterates, not the optimum: equal to the solver's tolerance
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    # the stacked responses are really different problems: their held-out losses differ
    losses = [together[t]["trials"][0]["loss"] for t in problems]
    assert len({round(v, 3) for v in losses}) == 3


def test_fold_solutions_split_back_per_target(three_targets):
    config = tune.resolve_config(CONFIG)
    problems = [tune.make_problem(d, config) for d in three_targets.values()]
    folds = tune.make_folds(problems[0].coords, config)
    params = [[{"lambda_smooth": 1e-3, "alpha": 1e-3, "beta": 1e-3}, {"lambda_smooth": 1e-2, "alpha": 1e-2, "beta": 1e-3}]] * 3
    stacked = cv.solve_fold_targets(problems, params, folds, 0, tol=1e-6, max_iter=5000)
    for problem, sol in zip(problems, stacked):
        alone = cv.solve_fold(problem, params[0], folds, 0, tol=1e-6, max_iter=5000)
        assert sol.W.shape == alone.W.shape == (50, 2, 11)
        np.testing.assert_allclose(sol.W, alone.W, atol=1e-3 * np.abs(alone.W).max())
        assert np.abs(sol.W).max() > 0.1  # a real solution, not W = 0 on both sides


def _spec(n_targets: int, features) -> SampleSpec:
    return SampleSpec(name="s", line=2, kind="h5ad", inputs={"h5ad": "missing.h5ad"}, targets=[f"g{i}" for i in range(n_targets)],
                      features=features)


def test_chunk_plan_follows_size_and_config(tmp_path):
    path = tmp_path / "s.h5ad"
    anndata.AnnData(np.zeros((3500, 225), dtype=np.float32), obsm={"spatial": np.zeros((3500, 2))}).write_h5ad(path)
    spec = _spec(200, [f"r{i}" for i in range(25)])
    spec.inputs = {"h5ad": str(path)}
    config = {"tune": {"enabled": True}, "preprocess": {"max_features": 2000}, "demo": {}}
    per_job = MEMORY_BUDGET // (3500 * 25 * 10 * BYTES_PER_ENTRY)  # default tuning: 10 trials per round
    assert targets_per_job(config, spec) == per_job == 76
    plan = plan_chunks(config, {"s": spec})["s"]
    assert [len(v) for v in plan.values()] == [67, 67, 66] and list(plan) == ["c0", "c1", "c2"]
    assert sum(plan.values(), []) == spec.targets  # every target once, in sheet order
    fixed = plan_chunks({**config, "jobs": {"targets_per_job": 50}}, {"s": spec})["s"]
    assert [len(v) for v in fixed.values()] == [50, 50, 50, 50]
    spec.features = "all"  # 'all': every gene that is not a target, at most max_features
    assert targets_per_job(config, spec) == MEMORY_BUDGET // (3500 * 25 * 10 * BYTES_PER_ENTRY)


def test_resources_grow_with_size_and_double_after_an_oom_kill():
    small, big = job_resources("tune_fold", 10_000, 100, 10), job_resources("tune_fold", 100_000, 100, 10)
    assert big["mem_mb"] > small["mem_mb"] and big["runtime"] > small["runtime"]
    retry = job_resources("tune_fold", 100_000, 100, 10, attempt=2)
    assert retry["mem_mb"] == 2 * big["mem_mb"] and retry["runtime"] == 2 * big["runtime"]
    # 3,500 spots × 25 features × 67 targets × 10 trials: the batched state is ~3.5 GiB, asked for on top of 1.5 GB
    chunk = job_resources("tune_fold", 3500, 25, 670)
    assert chunk["mem_mb"] == 1500 + 3500 * 25 * 670 * BYTES_PER_ENTRY // 2**20


def test_the_first_chunk_tunes_first_and_a_tuned_chunks_fits_and_reports_go_before_any_tuning():
    chunks = ["c0", "c1", "c2"]
    tuning = [chunk_priority(chunks, c) for c in chunks]
    after = [chunk_priority(chunks, c, after_tuning=True) for c in chunks]
    assert tuning[0] > tuning[1] == tuning[2]  # the rest interleave: their round barriers fill each other's idle core
    assert min(after) > max(tuning)


def test_final_fits_of_small_sections_take_one_thread(tmp_path):
    """Below ONE_THREAD_SPOTS the compiled single-thread loop is the fastest final fit; above, torch's threads."""
    config = {"tune": {"enabled": True}, "preprocess": {"max_features": 2000}, "demo": {}}
    threads = {}
    for n in (3500, ONE_THREAD_SPOTS + 1):
        path = tmp_path / f"s{n}.h5ad"
        anndata.AnnData(np.zeros((n, 30), dtype=np.float32), obsm={"spatial": np.zeros((n, 2))}).write_h5ad(path)
        spec = _spec(3, [f"r{i}" for i in range(25)])
        spec.inputs = {"h5ad": str(path)}
        threads[n] = fit_threads(config, spec)
    assert threads == {3500: 1, ONE_THREAD_SPOTS + 1: 2}


def test_200_targets_plan_at_most_100_jobs(tmp_path):
    rng = np.random.default_rng(0)
    genes = [f"r{i}" for i in range(25)] + [f"g{i}" for i in range(200)]
    adata = anndata.AnnData(rng.poisson(2.0, size=(300, len(genes))).astype(np.float32))
    adata.var_names, adata.obs_names = genes, [f"spot{i}" for i in range(300)]
    adata.obsm["spatial"] = rng.uniform(size=(300, 2))
    adata.write_h5ad(tmp_path / "s.h5ad")
    (tmp_path / "targets.txt").write_text("\n".join(genes[25:]) + "\n")
    (tmp_path / "config").mkdir()
    pd.DataFrame([{"sample": "s", "h5ad": "s.h5ad", "targets": "targets.txt", "features": ",".join(genes[:25])}]).to_csv(
        tmp_path / "config" / "samples.tsv", sep="\t", index=False)
    # default tuning (30 trials, 3 rounds, 5 folds); the sample is 3,500 spots in the benchmark, here 300: a fixed
    # chunk size of 67 stands for the 3,500-spot default (test_chunk_plan_follows_size_and_config)
    config = {"samples": "config/samples.tsv", "tune": {"enabled": True}, "perturbseq": {"enabled": False},
              "jobs": {"targets_per_job": 67}}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    total = int(re.search(r"^total\s+(\d+)$", text, re.M).group(1))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", text, re.M))
    assert total <= 100, text[-2000:]
    assert total == 78 and counts["tune_fold"] == "45" and counts["fit_final"] == "3" and counts["fit_report"] == "3"
    # the order jobs start in (chunks.chunk_priority): a chunk's selection, fits and report before any tuning job
    priority = {}
    for rule, block in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", text, re.M):
        found = re.search(r"priority: (\d+)", block)
        priority.setdefault(rule, set()).add(int(found.group(1)) if found else 0)
    assert priority["tune_fold"] == {1, 2}, priority
    assert min(min(priority[r]) for r in ("tune_select", "fit_final", "fit_report")) > max(priority["tune_fold"]), priority


def test_the_final_fit_starts_from_the_mean_of_the_chosen_trials_fold_solutions(tmp_path):
    """select_chunk keeps the chosen trial's fold solutions (round_r/fold_k.npz, W of shape (n, 1, p)); fit_final
    starts each target from their mean; a target without them (tuning off) starts cold."""
    from s3r.io import write_npz
    from s3r.tune.files import chosen_start

    rng = np.random.default_rng(0)
    maps = [rng.normal(size=(30, 1, 4)).astype(np.float32) for _ in range(3)]
    for k, W in enumerate(maps):
        write_npz(tmp_path / "T1" / "round_2" / f"fold_{k}.npz", numbers=np.array([27]), W=W)
    np.testing.assert_allclose(chosen_start(tmp_path / "T1"), np.mean([W[:, 0] for W in maps], axis=0).astype(np.float64), rtol=1e-6)
    assert chosen_start(tmp_path / "T2") is None
