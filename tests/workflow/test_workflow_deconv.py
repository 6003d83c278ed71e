"""Proportions-mode deconvolution in the workflow: a sample with a 'reference' gets its own rule on the GPU
partition, bad sheets stop at parse time, and (slow) the rule and its report maps run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import REPO, copy_config, output, snakemake


def enabled_workdir(path: Path) -> Path:
    copy_config(path)
    config = path / "config" / "config.yaml"
    config.write_text(config.read_text().replace("deconvolve:\n  enabled: false", "deconvolve:\n  enabled: true"))
    return path


def test_a_sample_with_a_reference_gets_the_proportions_rule_on_the_gpu_partition(tmp_path):
    workdir = enabled_workdir(tmp_path)
    pd.DataFrame(np.ones((2, 3)), index=["A", "B"], columns=["target_a", "target_b", "g"]).to_csv(workdir / "ref.csv")
    sheet = pd.read_csv(workdir / "config" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet["reference"] = ["", "ref.csv"]
    sheet.to_csv(workdir / "config" / "samples.tsv", sep="\t", index=False)
    result = snakemake(workdir, "-n", "--profile", str(REPO / "profiles" / "slurm"))
    assert result.returncode == 0, output(result)
    text = output(result)
    assert text.count("rule deconvolve_proportions:") == 1 and "rule deconvolve:" not in text
    block = text.split("rule deconvolve_proportions:", 1)[1].split("\n\n", 1)[0]
    assert "wildcards: sample=visium" in block and "slurm_partition=gpu" in block and "gpu=1" in block


def test_reference_with_scores_or_on_a_csv_sample_stops_at_parse_time(tmp_path):
    workdir = enabled_workdir(tmp_path)
    pd.DataFrame(np.ones((2, 3)), index=["A", "B"], columns=["x", "y", "z"]).to_csv(workdir / "ref.csv")
    sheet = pd.read_csv(workdir / "config" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    both = sheet.assign(reference=["", "ref.csv"], scores=["", "celltype_scores"])
    both.to_csv(workdir / "config" / "samples.tsv", sep="\t", index=False)
    result = snakemake(workdir, "-n")
    assert result.returncode != 0
    assert "column 'reference': give either 'scores' (components mode) or 'reference' (proportions), not both" in output(result)
    sheet.assign(reference=["ref.csv", ""]).to_csv(workdir / "config" / "samples.tsv", sep="\t", index=False)
    result = snakemake(workdir, "-n")
    assert result.returncode != 0 and "sample 'square'), column 'reference': proportions need spot counts" in output(result)


@pytest.mark.slow
def test_proportions_rule_and_report_run_end_to_end(tmp_path):
    import anndata

    from s3r.deconv import simulate_counts

    workdir = enabled_workdir(tmp_path)
    sim = simulate_counts(n_spots=120, n_types=3, n_genes=30, seed=2)
    counts = sim.counts.copy()
    adata = anndata.AnnData(X=counts, obs=pd.DataFrame(index=sim.spot_ids), var=pd.DataFrame(index=sim.genes),
                            obsm={"spatial": sim.coords})
    adata.write_h5ad(workdir / "tissue.h5ad")
    # single cells: 20 per type drawn around each type's mean
    rng = np.random.default_rng(0)
    cells = np.concatenate([rng.poisson(np.tile(sim.reference[k] * 5, (20, 1))) for k in range(3)]).astype(float)
    labels = np.repeat(sim.cell_types, 20)
    reference = anndata.AnnData(X=cells, obs=pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(60)]),
                                var=pd.DataFrame(index=sim.genes))
    reference.write_h5ad(workdir / "cells.h5ad")
    pd.DataFrame([{"sample": "tissue", "h5ad": "tissue.h5ad", "targets": sim.genes[0], "reference": "cells.h5ad"}]).to_csv(
        workdir / "config" / "samples.tsv", sep="\t", index=False
    )
    config = workdir / "config" / "config.yaml"
    config.write_text(config.read_text().replace("  proportions:\n    lambda_smooth: auto\n",
                                                 "  proportions:\n    lambda_smooth: auto\n    lambdas: [0.0, 0.2]\n"))
    target = "results/deconvolution/tissue/proportions.csv"
    maps = "results/report/tissue/deconvolution/regions.png"
    result = snakemake(workdir, target, maps, "--cores", "2", "--resources", "gpu=0")
    assert result.returncode == 0, output(result)[-5000:]
    proportions = pd.read_csv(workdir / target, index_col=0)
    assert list(proportions.index) == sim.spot_ids and list(proportions.columns) == sim.cell_types
    np.testing.assert_allclose(proportions.sum(axis=1), 1.0, atol=1e-9)
    assert np.sqrt(np.mean((proportions.to_numpy() - sim.proportions) ** 2)) < 0.15
    choice = pd.read_csv(workdir / "results" / "deconvolution" / "tissue" / "lambda_choice.csv")
    assert list(choice.columns) == ["lambda", "mean", "se", "chosen"] and choice["chosen"].sum() == 1
    assert 0.0 in set(choice["lambda"])
    summary = json.loads((workdir / "results" / "deconvolution" / "tissue" / "deconvolve.json").read_text())
    assert summary["mode"] == "proportions" and summary["lambda"] == choice.loc[choice["chosen"], "lambda"].item()
    assert (workdir / maps).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
