"""The Snakemake workflow as users run it: lint, SLURM routing in a dry-run, bad input stopped at parse time,
the demo end to end with the local profile, and the HTML report.

Every run happens in a temporary working directory (``--directory``) holding a copy of config/, so the
checkout stays clean.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import REPO, output, snakemake
from helpers import copy_config as make_workdir

GPU_RULES = {"fit_final", "deconvolve", "tune_fold"}
DEMO_PAIRS = [("square", "target_a"), ("square", "target_b"), ("visium", "target_a"), ("visium", "target_b")]


def planned_jobs(text: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) per job from a dry-run's printout."""
    jobs, rule = [], None
    for line in text.splitlines():
        header = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if header:
            rule = header.group(1)
            continue
        if rule and line.strip().startswith("resources:"):
            fields = line.split("resources:", 1)[1].split(",")
            jobs.append((rule, dict(f.strip().split("=", 1) for f in fields if "=" in f)))
            rule = None
    return jobs


# ---------------------------------------------------------------------------------------------------------
# Fast checks
# ---------------------------------------------------------------------------------------------------------


def test_lint_is_clean(tmp_path):
    result = snakemake(make_workdir(tmp_path), "--lint")
    assert result.returncode == 0, output(result)
    assert "Congratulations" in output(result)


def check_routing(jobs):
    assert jobs, "the dry-run planned no jobs"
    for rule, res in jobs:
        gpus = int(res.get("gpu", 0))
        if rule in GPU_RULES:
            assert gpus >= 1 and res.get("slurm_partition") == "gpu", (rule, res)
        else:
            assert gpus == 0 and res.get("slurm_partition") == "cpu", (rule, res)
        assert "mem_mb" in res and "runtime" in res, (rule, res)


def test_slurm_profile_routes_gpu_rules_to_gpu_partition(tmp_path):
    result = snakemake(make_workdir(tmp_path), "-n", "--profile", str(REPO / "profiles" / "slurm"))
    assert result.returncode == 0, output(result)
    jobs = planned_jobs(output(result))
    check_routing(jobs)
    assert sum(rule == "fit_final" for rule, _ in jobs) == 2  # one chunk per sample (both targets)


def test_slurm_profile_routes_deconvolution_when_enabled(tmp_path):
    workdir = make_workdir(tmp_path)
    config = (workdir / "config" / "config.yaml").read_text()
    (workdir / "config" / "config.yaml").write_text(config.replace("deconvolve:\n  enabled: false", "deconvolve:\n  enabled: true"))
    sheet = pd.read_csv(workdir / "config" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet["scores"] = ["", "celltype_scores"]
    sheet.to_csv(workdir / "config" / "samples.tsv", sep="\t", index=False)
    result = snakemake(workdir, "-n", "--profile", str(REPO / "profiles" / "slurm"))
    assert result.returncode == 0, output(result)
    jobs = planned_jobs(output(result))
    check_routing(jobs)
    assert [rule for rule, _ in jobs].count("deconvolve") == 1


def test_local_profile_limits_gpu_jobs(tmp_path):
    profile = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())
    assert profile["resources"] == {"gpu": 1} and "executor" not in profile
    result = snakemake(make_workdir(tmp_path), "-n", "--profile", str(REPO / "profiles" / "local"))
    assert result.returncode == 0, output(result)


# ---------------------------------------------------------------------------------------------------------
# Bad input stops before any job
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def user_data(tmp_path):
    """A working directory with a valid reference CSV triplet (targets a, b) and its sample sheet."""
    workdir = make_workdir(tmp_path / "run")
    data = workdir / "data"
    data.mkdir()
    spots = [f"spot{i}" for i in range(30)]
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(4, 30)), index=[f"f{j}" for j in range(4)], columns=spots).to_csv(data / "X.csv")
    pd.DataFrame(rng.normal(size=(30, 2)), index=spots, columns=["a", "b"]).to_csv(data / "Y.csv")
    pd.DataFrame(rng.uniform(size=(30, 2)), index=spots, columns=["row", "col"]).to_csv(data / "C.csv")
    write_sheet(workdir, [row()])
    return workdir


def row(**over):
    values = {"sample": "s1", "x_csv": "data/X.csv", "y_csv": "data/Y.csv", "coords_csv": "data/C.csv", "targets": "a,b"}
    values.update(over)
    return values


def write_sheet(workdir: Path, rows):
    pd.DataFrame(rows).to_csv(workdir / "config" / "samples.tsv", sep="\t", index=False)


def assert_stopped_before_jobs(workdir: Path, result, *fragments):
    text = output(result)
    assert result.returncode != 0, text
    for fragment in fragments:
        assert fragment in text, text
    assert "Building DAG" not in text and "rule " not in text, text
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()


@pytest.mark.parametrize(
    "change, fragments",
    [
        ("missing", ["config/samples.tsv line 2 (sample 's1'), column 'x_csv'", "not found"]),
        ("spots", ["line 2 (sample 's1'), column 'y_csv'", "lacks 1 spot(s)", "same spot ids"]),
        ("non_numeric", ["column 'x_csv'", "non-numeric value 'oops'", "replace it with a number"]),
        ("target", ["column 'targets'", "target 'c' is not a column of data/Y.csv"]),
        ("duplicate", ["config/samples.tsv line 3 (sample 's1'), column 'sample'", "duplicate sample name"]),
        ("override", ["line 2 (sample 's1'), column 'alpha'", "is less than the minimum of 0"]),
    ],
)
def test_bad_sample_sheet_stops_before_any_job(user_data, change, fragments):
    data = user_data / "data"
    if change == "missing":
        write_sheet(user_data, [row(x_csv="data/nope.csv")])
    elif change == "spots":
        y = pd.read_csv(data / "Y.csv", index_col=0).rename(index={"spot3": "spot3b"})
        y.to_csv(data / "Y.csv")
    elif change == "non_numeric":
        text = (data / "X.csv").read_text().splitlines()
        text[2] = text[2].rsplit(",", 1)[0] + ",oops"
        (data / "X.csv").write_text("\n".join(text) + "\n")
    elif change == "target":
        write_sheet(user_data, [row(targets="a,c")])
    elif change == "duplicate":
        write_sheet(user_data, [row(), row(targets="b")])
    elif change == "override":
        write_sheet(user_data, [row(alpha=-1)])
    result = snakemake(user_data, "--cores", "1")
    assert_stopped_before_jobs(user_data, result, *fragments)


def test_config_outside_schema_stops_before_any_job(user_data):
    path = user_data / "config" / "config.yaml"
    path.write_text(path.read_text().replace("  k: 7", "  k: 0"))
    result = snakemake(user_data, "--cores", "1")
    assert_stopped_before_jobs(user_data, result, "setting 'graph.k': 0 is less than the minimum of 1")
    result = snakemake(user_data, "--cores", "1", "--config", "modle={}")
    assert_stopped_before_jobs(user_data, result, "unknown setting 'modle' (did you mean 'model'?)")
    path.write_text(path.read_text().replace("  k: 0", "  k: 7").replace("  folds: 2 ", "  folds: 1 "))
    result = snakemake(user_data, "--cores", "1")
    assert_stopped_before_jobs(user_data, result, "setting 'tune.folds': 1 is less than the minimum of 2")
    path.write_text(path.read_text().replace("  folds: 1 ", "  folds: 2 ").replace("  rounds: 2 ", "  rounds: 9 "))
    result = snakemake(user_data, "--cores", "1")
    assert_stopped_before_jobs(user_data, result, "9 rounds need at least as many trials; got 6")


def test_failed_job_leaves_no_complete_output(user_data):
    """Valid at parse time, fails in preprocess (its only feature is constant): no .npz may remain."""
    x = pd.read_csv(user_data / "data" / "X.csv", index_col=0)
    x.loc["f0"] = 1.0
    x.to_csv(user_data / "data" / "X.csv")
    write_sheet(user_data, [row(features="f0")])
    result = snakemake(user_data, "--cores", "1", "results/preprocessed/s1.npz")
    assert result.returncode != 0, output(result)
    folder = user_data / "results" / "preprocessed"
    assert not folder.exists() or not any(folder.iterdir())
    log = (user_data / "logs" / "preprocess" / "s1.log").read_text()
    assert "every selected feature is constant" in log


# ---------------------------------------------------------------------------------------------------------
# The demo, end to end
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    before = sorted(p.name for p in REPO.iterdir())
    workdir = make_workdir(tmp_path_factory.mktemp("demo"))
    start = time.monotonic()
    result = snakemake(workdir, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", timeout=900)
    elapsed = time.monotonic() - start
    print(f"demo wall time: {elapsed:.1f} s")
    assert result.returncode == 0, output(result)[-5000:]
    assert re.search(r"Provided resources: .*gpu\W+(\"gpu\", )?1", output(result)), output(result)[-5000:]
    assert sorted(p.name for p in REPO.iterdir()) == before, "the run wrote into the checkout"
    return workdir, elapsed


@pytest.mark.slow
def test_demo_runs_locally(demo_run):
    workdir, _ = demo_run  # its wall time is a benchmark figure, not a test (a shared machine makes it noise)
    for sample, target in DEMO_PAIRS:
        fit_dir = workdir / "results" / "fits" / sample / "c0" / target  # both targets of a sample: one chunk
        coef = pd.read_csv(fit_dir / "coefficients.csv", index_col=0)
        prepared = np.load(workdir / "results" / "preprocessed" / f"{sample}.npz")
        # reference orientation: features x spots
        assert list(coef.columns) == prepared["spot_ids"].tolist()
        assert list(coef.index) == prepared["feature_names"].tolist()
        assert np.isfinite(coef.to_numpy()).all()
        fit = json.loads((fit_dir / "fit.json").read_text())
        assert fit  # written by s3r.results.write_fit
        report_dir = workdir / "results" / "report" / sample / "c0" / target
        for figure in ("coefficient_maps", "heatmap", "convergence", "observed_vs_predicted", "tuning_history", "tuning_parameters", "tuning_folds"):
            assert (report_dir / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
            assert not (report_dir / f"{figure}.svg").exists(), figure  # report.vector: null, PNGs only
        features = pd.read_csv(report_dir / "features.tsv", sep="\t")
        assert len(features) == int((coef.to_numpy() != 0).any(axis=1).sum())  # every selected feature, once
        assert features["n_folds"].eq(2).all() and features["folds_selected"].between(0, 2).all()
        # the parameters came from the cross-validation rounds, and the study is on disk for optuna-dashboard
        tune_dir = workdir / "results" / "tune" / sample / "c0" / "targets" / target
        chosen = json.loads((tune_dir / "best_params.json").read_text())
        assert chosen["source"] == "tune"
        trials = pd.read_csv(tune_dir / "trials.tsv", sep="\t")
        assert len(trials) == 6 and (trials["state"] == "COMPLETE").all()
        picked = trials.set_index("number").loc[chosen["tuning"]["trial"]]  # one_se: not always the lowest loss
        best = trials.loc[trials["cv_loss"].idxmin()]
        assert picked["cv_loss"] <= best["cv_loss"] + best["cv_se"] + 1e-9
        assert chosen["params"]["lambda_smooth"] == pytest.approx(picked["lambda_smooth"])
        assert fit["parameters"]["alpha"] == pytest.approx(picked["alpha"])
        assert (tune_dir / "study.journal").stat().st_size > 0
    summary = pd.read_csv(workdir / "results" / "report" / "summary.tsv", sep="\t")
    assert sorted(zip(summary["sample"], summary["target"])) == DEMO_PAIRS
    assert (summary["r2"] > 0.5).all(), summary


@pytest.mark.slow
def test_demo_screen_runs_through_the_perturbseq_rules(demo_run):
    """The demo's perturb-seq screen (config perturbseq.demo), fitted and drawn by its rules in the same run."""
    workdir, _ = demo_run
    heatmap = workdir / "results" / "report" / "perturbseq" / "perturb" / "coefficients_heatmap.png"
    assert heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scores = pd.read_csv(workdir / "results" / "perturbseq" / "perturb" / "programme_scores.tsv", sep="\t", index_col=0)
    assert list(scores.index) == [f"P{j}" for j in range(1, 7)]
    strength = np.sort(np.abs(scores.to_numpy()), axis=1)
    assert (strength[:, -1] > 0.5).all() and (strength[:, -2] < 0.25 * strength[:, -1]).all()  # one programme each, strongly


@pytest.mark.slow
def test_demo_rerun_has_nothing_to_do(demo_run):
    workdir, _ = demo_run
    result = snakemake(workdir, "-n", "--profile", str(REPO / "profiles" / "local"))
    assert result.returncode == 0, output(result)
    assert "Nothing to be done" in output(result), output(result)


@pytest.mark.slow
def test_report_html(demo_run):
    workdir, _ = demo_run
    result = snakemake(workdir, "--report", "report.html")
    assert result.returncode == 0, output(result)
    html = (workdir / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    for name in ("coefficient_maps.png", "heatmap.png", "features.tsv", "tuning_history.png", "convergence.png", "summary.tsv"):
        assert name in html, name


@pytest.mark.slow
def test_deconvolution_rule_runs_when_enabled(tmp_path):
    import anndata

    from s3r.deconv import simulate_deconvolution

    workdir = make_workdir(tmp_path)
    sim = simulate_deconvolution("uniform", "three_regions", n_cell_types=5, n_components=3, n_spots=80, seed=1)
    rng = np.random.default_rng(0)
    adata = anndata.AnnData(
        X=rng.normal(size=(80, 3)),
        obs=pd.DataFrame(index=sim.spot_ids),
        var=pd.DataFrame(index=["g1", "g2", "t"]),
        obsm={"spatial": sim.coords, "celltype_scores": pd.DataFrame(sim.scores, index=sim.spot_ids, columns=sim.cell_types)},
    )
    adata.write_h5ad(workdir / "tissue.h5ad")
    pd.DataFrame([{"sample": "tissue", "h5ad": "tissue.h5ad", "targets": "t", "scores": "celltype_scores"}]).to_csv(
        workdir / "config" / "samples.tsv", sep="\t", index=False
    )
    config = workdir / "config" / "config.yaml"
    # a few outer iterations: this checks the wiring, s3r.deconv's own tests check convergence
    config.write_text(
        config.read_text()
        .replace("deconvolve:\n  enabled: false", "deconvolve:\n  enabled: true")
        .replace("    graph: delaunay\n", "    graph: delaunay\n    max_iter: 2\n    x_max_iter: 200\n")
    )
    target = "results/deconvolution/tissue/proportions.csv"
    maps = "results/report/tissue/deconvolution/edge_weights.png"
    result = snakemake(workdir, target, maps, "--cores", "2", "--resources", "gpu=0")
    assert result.returncode == 0, output(result)[-5000:]
    edges = pd.read_csv(workdir / "results" / "deconvolution" / "tissue" / "edge_weights.csv")
    assert list(edges.columns) == ["spot_a", "spot_b", "weight"] and set(edges["spot_a"]) <= set(sim.spot_ids)
    assert (edges["weight"] > 0).all()
    for name in ("proportions", "regions", "edge_weights"):
        assert (workdir / maps).with_name(f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proportions = pd.read_csv(workdir / target, index_col=0)
    assert list(proportions.index) == sim.spot_ids and list(proportions.columns) == sim.cell_types
    np.testing.assert_allclose(proportions.sum(axis=1), 1.0, atol=1e-6)
    summary = json.loads((workdir / "results" / "deconvolution" / "tissue" / "deconvolve.json").read_text())
    assert summary["n_spots"] == 80 and summary["device"] == "cpu"

    config.write_text(config.read_text().replace("n_components: 3", "n_component: 3"))
    result = snakemake(workdir, "-n", target)
    assert result.returncode != 0 and "unknown setting 'deconvolve.options.n_component'" in output(result)
