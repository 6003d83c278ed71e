"""The workflow from a Space Ranger folder: start-up checks, then normalised, tuned, fitted, reported and
written back to results/anndata/<sample>.h5ad; s3r fit --spaceranger reproduces the workflow's fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import REPO
from helpers import snakemake as run_snakemake
from tenx_layouts import DLPFC, load_dlpfc, write_spaceranger, write_xenium

TARGET = "MBP"
FEATURES = ["PLP1", "MOBP", "PCP4", "SOX10", "SNAP25"]
pytestmark = pytest.mark.skipif(not DLPFC.is_file(), reason="../shared/data/real/dlpfc_151675.h5ad is absent")


def snakemake(workdir: Path, *args: str, timeout: int = 900):
    return run_snakemake(workdir, *args, timeout=timeout)


def workdir_for(root: Path, sheet_rows: list[dict], **sections: dict) -> Path:
    """A working directory with the repository's config (demo and perturb-seq off, a tiny tuning budget),
    ``sections`` merged into it (e.g. model={"family": "poisson"}), and the given sample sheet."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["demo"] = {}
    config["perturbseq"]["enabled"] = False
    config["perturbseq"]["demo"] = {}
    config["tune"].update(n_trials=2, rounds=1, folds=2)
    for name, values in sections.items():
        config[name].update(values)
    (root / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    pd.DataFrame(sheet_rows).to_csv(root / "config" / "samples.tsv", sep="\t", index=False)
    return root


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    adata = load_dlpfc()
    keep = list(adata.var_names[:150]) + [g for g in [TARGET, *FEATURES] if g not in set(adata.var_names[:150])]
    root = tmp_path_factory.mktemp("wfio")
    return {"root": root, "adata": adata[:, keep].copy(), "outs": write_spaceranger(root / "outs", adata[:, keep].copy(), n_off_tissue=4)}


def test_bad_folders_stop_at_start_up_with_one_line(section, tmp_path):
    row = {"sample": "dlpfc", "spaceranger": str(section["outs"]), "targets": "NOPE1", "features": ",".join(FEATURES)}
    result = snakemake(workdir_for(tmp_path / "a", [row]), "-n")
    text = result.stdout + result.stderr
    matrix = section["outs"] / "filtered_feature_bc_matrix.h5"
    assert result.returncode != 0
    assert (f"s3r: config/samples.tsv line 2 (sample 'dlpfc'), column 'targets': target 'NOPE1' is not a gene of {matrix} "
            f"(did you mean 'NOS1', 'CNDP1'?); check the name") in text, text[-3000:]
    row = {**row, "targets": TARGET, "spaceranger": str(tmp_path / "empty")}
    (tmp_path / "empty").mkdir()
    result = snakemake(workdir_for(tmp_path / "b", [row]), "-n")
    text = result.stdout + result.stderr
    assert (f"s3r: config/samples.tsv line 2 (sample 'dlpfc'), column 'spaceranger': {tmp_path / 'empty' / 'filtered_feature_bc_matrix.h5'}: "
            f"feature-barcode matrix not found; point --spaceranger") in text, text[-3000:]


@pytest.mark.parametrize("how", ["barcode not in positions", "nothing in tissue"])
def test_inconsistent_folders_stop_at_start_up_with_one_line(section, tmp_path, how):
    outs = write_spaceranger(tmp_path / "outs", section["adata"][:300].copy(), n_off_tissue=2, images=False)
    positions = outs / "spatial" / "tissue_positions.csv"
    table = pd.read_csv(positions)
    if how == "barcode not in positions":
        dropped = sorted(table["barcode"])[0]
        table[table["barcode"] != dropped].to_csv(positions, index=False)
        message = (f"{positions}: 1 barcode(s) of filtered_feature_bc_matrix.h5 are not in the positions table (e.g. {dropped!r}); "
                   f"use the spatial/ folder of the same Space Ranger run")
    else:
        table.assign(in_tissue=0).to_csv(positions, index=False)
        message = (f"{positions}: no spot of filtered_feature_bc_matrix.h5 is in tissue (in_tissue is 0 for all 302); "
                   f"rerun Space Ranger with a correct tissue alignment")
    row = {"sample": "dlpfc", "spaceranger": str(outs), "targets": TARGET, "features": ",".join(FEATURES)}
    result = snakemake(workdir_for(tmp_path / "w", [row]), "-n")
    text = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in text.splitlines() if line.startswith("s3r: ")]
    assert lines == [f"s3r: config/samples.tsv line 2 (sample 'dlpfc'), column 'spaceranger': {message}"], text[-3000:]
    assert not (tmp_path / "w" / "results").exists()


def test_visium_hd_bins_through_the_sample_sheet(section, tmp_path):
    """A sheet row naming a Visium HD outs/ folder and bin_size 8 imports the 8 µm bins (parquet positions);
    with a bin size the run lacks, the workflow stops at start-up with one line."""
    pytest.importorskip("pyarrow")
    from tenx_layouts import visium_hd_grid

    bins = visium_hd_grid(section["adata"], 20)
    outs = write_spaceranger(tmp_path / "outs", bins, positions="parquet", hd_bin=8, n_off_tissue=3, images=False)
    row = {"sample": "hd", "spaceranger": str(outs), "targets": TARGET, "features": ",".join(FEATURES)}
    # (no bin size at all: the same reader line, tests/cli/test_cli_io.py and tests/data/test_readers.py)
    result = snakemake(workdir_for(tmp_path / "bad", [{**row, "bin_size": 16}]), "-n")
    text = result.stdout + result.stderr
    message = f"{outs / 'binned_outputs' / 'square_016um'}: no 16 µm bins in this Visium HD run; use one of 8 µm"
    assert result.returncode != 0
    assert f"s3r: config/samples.tsv line 2 (sample 'hd'), column 'spaceranger': {message}" in text, text[-3000:]
    workdir = workdir_for(tmp_path / "good", [{**row, "bin_size": 8}])
    result = snakemake(workdir, "--cores", "1", "results/input/hd.h5ad")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    import anndata

    imported = anndata.read_h5ad(workdir / "results" / "input" / "hd.h5ad")
    assert list(imported.obs_names) == list(bins.obs_names)  # the in-tissue bins, in the matrix's order
    assert (imported.X != bins.X).nnz == 0 and imported.uns["s3r_input"]["bin_size_um"] == 8
    np.testing.assert_array_equal(imported.obsm["spatial"], bins.obsm["spatial"] * 10)


@pytest.fixture(scope="module")
def run(section):
    row = {"sample": "dlpfc", "spaceranger": str(section["outs"]), "targets": TARGET, "features": ",".join(FEATURES)}
    workdir = workdir_for(section["root"] / "work", [row])
    result = snakemake(workdir, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "--resources", "gpu=0")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return workdir


@pytest.mark.slow
def test_workflow_writes_results_back_into_anndata(run, section):
    import anndata

    fit_dir = run / "results" / "fits" / "dlpfc" / "c0" / TARGET
    report = json.loads((fit_dir / "fit.json").read_text())
    assert report["normalisation"]["policy"] == "auto" and report["normalisation"]["counts_detected"]
    assert report["normalisation"]["target"] == "library-size normalised to 10000 per spot, then log1p"
    adata = anndata.read_h5ad(run / "results" / "anndata" / "dlpfc.h5ad")
    assert adata.n_obs == 3592 and adata.n_vars == section["adata"].n_vars
    coef = pd.read_csv(fit_dir / "coefficients.csv", index_col=0, float_precision="round_trip")
    frame = adata.obsm[f"s3r_{TARGET}"]
    assert list(frame.columns) == list(coef.index)
    np.testing.assert_array_equal(frame.loc[list(coef.columns)].to_numpy(), coef.to_numpy().T)
    domains = pd.read_csv(run / "results" / "report" / "dlpfc" / "domains.tsv", sep="\t").set_index("spot")["domain"]
    assert list(adata.obs["s3r_domain"].astype(str)) == list(domains.loc[list(adata.obs_names)])
    tuning = json.loads((run / "results" / "tune" / "dlpfc" / "c0" / "targets" / TARGET / "best_params.json").read_text())["tuning"]
    assert adata.uns["s3r"][TARGET]["cv"]["cv_loss"] == pytest.approx(tuning["cv_loss"])
    assert "hires" in adata.uns["spatial"]["lib1"]["images"]
    assert (run / "results" / "report" / "dlpfc" / "c0" / TARGET / "coefficient_maps.png").is_file()
    assert "maps over the tissue image (hires)" in (run / "logs" / "fit_report" / "dlpfc" / "c0.log").read_text()


@pytest.mark.slow
def test_cli_fit_on_the_folder_gives_the_workflows_coefficients(run, section, tmp_path):
    from s3r.cli import main

    best = run / "results" / "tune" / "dlpfc" / "c0" / "targets" / TARGET / "best_params.json"
    code = main(["fit", "--spaceranger", str(section["outs"]), "--target", TARGET, "--features", ",".join(FEATURES),
                 "--params", str(best), "--quiet", "--out", str(tmp_path / "cli")])
    assert code == 0
    ours = pd.read_csv(tmp_path / "cli" / "coefficients.csv", index_col=0, float_precision="round_trip")
    theirs = pd.read_csv(run / "results" / "fits" / "dlpfc" / "c0" / TARGET / "coefficients.csv", index_col=0, float_precision="round_trip")
    assert list(ours.index) == list(theirs.index) and list(ours.columns) == list(theirs.columns)
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), rtol=0, atol=1e-8)
    a = json.loads((tmp_path / "cli" / "fit.json").read_text())["normalisation"]
    b = json.loads((run / "results" / "fits" / "dlpfc" / "c0" / TARGET / "fit.json").read_text())["normalisation"]
    assert a == b


@pytest.mark.slow
def test_workflow_end_to_end_from_a_xenium_folder(tmp_path):
    import anndata

    adata = load_dlpfc()
    keep = list(adata.var_names[:60]) + [g for g in [TARGET, *FEATURES] if g not in set(adata.var_names[:60])]
    adata = adata[:800, keep].copy()
    ids = [f"cell{i:05d}-1" for i in range(adata.n_obs)]
    outs = write_xenium(tmp_path / "xenium" / "outs", adata.X, ids, [str(g) for g in adata.var_names],
                        np.asarray(adata.obsm["spatial"]) * 2.5)
    row = {"sample": "xen", "xenium": str(outs.parent), "targets": TARGET, "features": ",".join(FEATURES)}
    workdir = workdir_for(tmp_path / "work", [row])
    result = snakemake(workdir, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "--resources", "gpu=0")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    imported = anndata.read_h5ad(workdir / "results" / "input" / "xen.h5ad")
    assert list(imported.obs_names) == ids and set(imported.var["feature_types"]) == {"Gene Expression"}
    out = anndata.read_h5ad(workdir / "results" / "anndata" / "xen.h5ad")
    assert out.n_obs == 800 and list(out.obsm[f"s3r_{TARGET}"].columns) == FEATURES
    np.testing.assert_array_equal(out.obsm["spatial"], np.asarray(adata.obsm["spatial"]) * 2.5)
    report = json.loads((workdir / "results" / "fits" / "xen" / "c0" / TARGET / "fit.json").read_text())
    assert report["normalisation"]["counts_detected"] and report["normalisation"]["policy"] == "auto"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["normalisation off", "poisson"])
def test_counts_policy_and_its_off_switch_are_the_clis(section, tmp_path, case):
    """Deliverable 2 both ways round: the workflow (tuning off, fixed λ, α, β) with 'preprocess.normalize: false',
    or with a count family, states in fit.json what the CLI states with --normalisation off / --family poisson,
    and fits the same coefficients."""
    from s3r.cli import main

    outs = write_spaceranger(tmp_path / "outs", section["adata"][:600].copy(), n_off_tissue=2, images=False)
    row = {"sample": "s", "spaceranger": str(outs), "targets": TARGET, "features": ",".join(FEATURES)}
    off = case == "normalisation off"
    model = {"tol": 1e-4, "max_iter": 1000, "lambda_smooth": 0.05, "alpha": 0.05, "beta": 0.05, **({} if off else {"family": "poisson"})}
    workdir = workdir_for(tmp_path / "w", [row], model=model, tune={"enabled": False},
                         preprocess={"normalize": False} if off else {})
    result = snakemake(workdir, "--cores", "1", "results/fits/s/c0")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    fit_dir = workdir / "results" / "fits" / "s" / "c0" / TARGET
    theirs = json.loads((fit_dir / "fit.json").read_text())["normalisation"]
    if off:
        assert theirs == {"counts_detected": True, "policy": "off", "features": "as stored, scaled to unit variance (not centred)",
                          "target": "as stored", "offset": None, "target_sum": None}
    else:
        assert theirs["policy"] == "auto" and theirs["target"] == "raw counts (count family)"
        assert theirs["offset"] == "log library size (log of each spot's total counts)"
    best = workdir / "results" / "tune" / "s" / "c0" / "targets" / TARGET / "best_params.json"
    flags = ["--normalisation", "off"] if off else ["--family", "poisson"]
    code = main(["fit", "--spaceranger", str(outs), "--target", TARGET, "--features", ",".join(FEATURES), "--params", str(best),
                 "--tol", "1e-4", "--max-iter", "1000", *flags, "--quiet", "--out", str(tmp_path / "cli")])
    assert code in (0, 3)
    assert json.loads((tmp_path / "cli" / "fit.json").read_text())["normalisation"] == theirs
    ours = pd.read_csv(tmp_path / "cli" / "coefficients.csv", index_col=0, float_precision="round_trip")
    workflow = pd.read_csv(fit_dir / "coefficients.csv", index_col=0, float_precision="round_trip")
    assert list(ours.columns) == list(workflow.columns) and np.abs(workflow.to_numpy()).max() > 0
    np.testing.assert_allclose(ours.to_numpy(), workflow.to_numpy(), rtol=0, atol=1e-8)
