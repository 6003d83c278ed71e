"""Start-up checks of sheet × config × profile combinations (s3r.workflow.startup), each one line before any job,
and the install path for clusters (the SLURM extra)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from snakemake.utils import validate

from s3r.errors import S3RInputError
from s3r.workflow.samples import check_samples, read_sample_sheet
from s3r.workflow.settings import graph_settings
from s3r.workflow.startup import check_deconvolve_inputs, check_graphs, check_threads, job_threads

from helpers import REPO, snakemake

SCHEMA = REPO / "workflow" / "schemas" / "samples.schema.yaml"


@pytest.fixture
def csv_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    spots = [f"s{i}" for i in range(20)]
    pd.DataFrame(rng.normal(size=(3, 20)), index=["f0", "f1", "f2"], columns=spots).to_csv("X.csv")
    pd.DataFrame(rng.normal(size=(20, 2)), index=spots, columns=["a", "b"]).to_csv("Y.csv")
    pd.DataFrame(rng.uniform(size=(20, 2)), index=spots, columns=["row", "col"]).to_csv("C.csv")
    return tmp_path


def specs_from(text: str):
    Path("s.tsv").write_text(text)
    frame, lines = read_sample_sheet("s.tsv")
    validate(frame, schema=str(SCHEMA))  # as common.smk does: it turns an empty cell into NaN and 5 into 5.0
    return check_samples(frame, lines, sheet="s.tsv")


HEAD = "sample\tx_csv\ty_csv\tcoords_csv\ttargets"
ROW = "X.csv\tY.csv\tC.csv\ta"
CONFIG = {"graph": {"method": "knn", "k": 7, "radius": None, "max_edge_length": None}, "deconvolve": {"enabled": False}}


def test_per_sample_k_stays_an_integer_when_another_row_leaves_it_empty(csv_inputs):
    specs = specs_from(f"{HEAD}\tk\ns1\t{ROW}\t5\ns2\t{ROW}\t\n")
    k = graph_settings(CONFIG, specs["s1"])["k"]
    assert k == 5 and type(k) is int
    assert graph_settings(CONFIG, specs["s2"])["k"] == 7


def test_radius_graph_needs_a_radius(csv_inputs):
    specs = specs_from(f"{HEAD}\tgraph\ns1\t{ROW}\tradius\ns2\t{ROW}\t\n")
    with pytest.raises(S3RInputError, match=r"^sample s1: sample sheet column 'graph' is 'radius' but config graph.radius is empty; set graph.radius"):
        check_graphs(CONFIG, specs)
    check_graphs({**CONFIG, "graph": {**CONFIG["graph"], "radius": 0.3}}, specs)  # a radius given: fine
    radius_everywhere = {**CONFIG, "graph": {**CONFIG["graph"], "method": "radius"}}
    with pytest.raises(S3RInputError, match="sample s1: config graph.method is 'radius'"):
        check_graphs(radius_everywhere, specs_from(f"{HEAD}\ns1\t{ROW}\n"))


def test_deconvolution_enabled_needs_scores_or_reference(csv_inputs):
    specs = specs_from(f"{HEAD}\ns1\t{ROW}\n")
    check_deconvolve_inputs(CONFIG, specs, "s.tsv")  # off: nothing asked
    with pytest.raises(S3RInputError, match="deconvolve.enabled is true but no sample in s.tsv has a 'scores' or 'reference' column"):
        check_deconvolve_inputs({**CONFIG, "deconvolve": {"enabled": True}}, specs, "s.tsv")
    pd.DataFrame(np.ones((20, 2)), index=[f"s{i}" for i in range(20)], columns=["t1", "t2"]).to_csv("scores.csv")
    with_scores = specs_from(f"{HEAD}\tscores\ns1\t{ROW}\tscores.csv\n")
    check_deconvolve_inputs({**CONFIG, "deconvolve": {"enabled": True}}, with_scores, "s.tsv")


def test_threads_capped_and_profile_overrides_refused():
    config = {"jobs": {"max_threads": 2}}
    assert job_threads(config, 4) == 2 and job_threads(config, 1) == 1 and job_threads({}, 4) == 4
    check_threads(config, {"tune_fold": 2})
    with pytest.raises(S3RInputError, match=r"^profile set-threads fit_final: 4 exceeds config jobs.max_threads 2 .*lower set-threads fit_final"):
        check_threads(config, {"tune_fold": 1, "fit_final": 4})
    check_threads({}, {"fit_final": 64})  # no cap known: the profile is trusted


def _dry_run(workdir: Path, *args: str):
    return snakemake(workdir, "-n", *args)


def test_startup_errors_stop_the_dry_run_before_any_job(tmp_path):
    import shutil

    shutil.copytree(REPO / "config", tmp_path / "config")
    result = _dry_run(tmp_path, "--config", "graph={method: radius}")
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "sample square: config graph.method is 'radius' but config graph.radius is empty" in text, text[-3000:]
    assert "rule " not in text
    config = tmp_path / "config" / "config.yaml"
    config.write_text(config.read_text() + "\njobs:\n  max_threads: 2\n")
    result = _dry_run(tmp_path, "--set-threads", "fit_final=4")
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "profile set-threads fit_final: 4 exceeds config jobs.max_threads 2" in text, text[-3000:]
    config.write_text(config.read_text().replace("deconvolve:\n  enabled: false", "deconvolve:\n  enabled: true"))
    result = _dry_run(tmp_path)
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "deconvolve.enabled is true but no sample in config/samples.tsv" in text, text[-3000:]


def test_slurm_extra_names_the_executor_plugin_and_the_readme_says_so():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("snakemake-executor-plugin-slurm") for dep in extras["slurm"])
    readme = (REPO / "README.md").read_text()
    assert "pip install -e '.[slurm]'" in readme and "--profile profiles/slurm" in readme
