"""The `.test/` scenarios end to end on tiny simulated data: many targets in chunks, deconvolution feeding S3R."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import REPO, output, snakemake


def run_scenario(name: str, tmp_path: Path) -> Path:
    workdir = tmp_path / name
    shutil.copytree(REPO / ".test" / name, workdir)
    result = snakemake(workdir, "--cores", "2", "--resources", "gpu=0", timeout=1500)
    assert result.returncode == 0, output(result)[-5000:]
    return workdir


@pytest.mark.slow
def test_many_targets_in_chunks(tmp_path):
    workdir = run_scenario("many_targets", tmp_path)
    targets = [f"t{i:02d}" for i in range(1, 7)]
    chunks = sorted(p.name for p in (workdir / "results" / "fits" / "tissue").iterdir() if p.is_dir())
    assert chunks == ["c0", "c1", "c2"]  # six targets, at most two per job: three chunks of two
    fits = {t.name: c for c in chunks for t in (workdir / "results" / "fits" / "tissue" / c).iterdir() if t.is_dir()}
    assert sorted(fits) == targets and [fits[t] for t in targets] == ["c0"] * 2 + ["c1"] * 2 + ["c2"] * 2
    # one fold job per chunk and fold (2 folds, 1 round), not per target
    assert len(list((workdir / "logs" / "tune" / "tissue").glob("c*/round_0_fold_*.log"))) == 6
    summary = pd.read_csv(workdir / "results" / "report" / "summary.tsv", sep="\t")
    assert list(summary["target"]) == targets and (summary["params_source"] == "tune").all()
    for t in targets:
        tune_dir = workdir / "results" / "tune" / "tissue" / fits[t] / "targets" / t
        best = json.loads((tune_dir / "best_params.json").read_text())
        assert best["target"] == t and best["source"] == "tune"
        fit = json.loads((workdir / "results" / "fits" / "tissue" / fits[t] / t / "fit.json").read_text())
        if best["tuning"]["effect_found"] is False:  # the intercept-only model (tune.no_effect), α above the chosen one
            assert fit["extra"]["final_model"].startswith("intercept-only") and fit["selected_features"] == 0
            assert fit["parameters"]["alpha"] > best["params"]["alpha"]
        else:
            assert fit["parameters"]["alpha"] == pytest.approx(best["params"]["alpha"])
        assert (workdir / "results" / "report" / "tissue" / fits[t] / t / "features.tsv").is_file()
        assert len(pd.read_csv(tune_dir / "trials.tsv", sep="\t")) == 2  # its own study


@pytest.mark.slow
def test_deconvolution_proportions_are_the_s3r_features(tmp_path):
    workdir = run_scenario("deconvolution", tmp_path)
    proportions = pd.read_csv(workdir / "results" / "deconvolution" / "tissue" / "proportions.csv", index_col=0)
    prepared = np.load(workdir / "results" / "preprocessed" / "tissue.npz")
    assert list(prepared["feature_names"]) == list(proportions.columns)
    X = prepared["X"]
    P = proportions.loc[prepared["spot_ids"].astype(str)].to_numpy()
    for j in range(P.shape[1]):  # the same columns, scaled by the preprocessing
        if P[:, j].std() > 0:
            assert abs(np.corrcoef(X[:, j], P[:, j])[0, 1]) > 0.999
    coef = pd.read_csv(workdir / "results" / "fits" / "tissue" / "c0" / "target_a" / "coefficients.csv", index_col=0)
    assert list(coef.index) == list(proportions.columns)
