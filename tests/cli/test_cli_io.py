"""s3r fit/tune on a Space Ranger folder: the counts policy, fit.json's "normalisation", --write-h5ad."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from s3r import S3R
from s3r.cli import main
from tenx_layouts import DLPFC, load_dlpfc, write_spaceranger

pytestmark = pytest.mark.skipif(not DLPFC.is_file(), reason="../shared/data/real/dlpfc_151675.h5ad is absent")

TARGET = "MBP"
FEATURES = ["PLP1", "MOBP", "PCP4", "SOX10", "SNAP25"]
SOLVER = ["--tol", "1e-4", "--max-iter", "400", "--lambda-smooth", "0.05", "--alpha", "0.05", "--beta", "0.05"]


@pytest.fixture(scope="module")
def section(tmp_path_factory):
    adata = load_dlpfc()
    keep = list(adata.var_names[:150]) + [g for g in [TARGET, *FEATURES] if g not in set(adata.var_names[:150])]
    adata = adata[:, keep].copy()
    root = tmp_path_factory.mktemp("io")
    outs = write_spaceranger(root / "outs", adata, n_off_tissue=4)
    # the reference values, computed here from the counts: spots in the matrix's (sorted) order
    order = sorted(str(s) for s in adata.obs_names)
    sub = adata[order]
    counts = sub.X.toarray().astype(np.float64)
    totals = counts.sum(axis=1)  # all genes, the antibody feature excluded
    names = list(sub.var_names)
    lognorm = np.log1p(counts / totals[:, None] * 1e4)
    X = lognorm[:, [names.index(f) for f in FEATURES]]
    X = X / X.std(axis=0)  # scaled, not centred (s3r.preprocess)
    xy = np.asarray(sub.obsm["spatial"])
    coords = np.column_stack([np.round(xy[:, 0] * 10), np.round(xy[:, 1] * 10)])
    return {"outs": outs, "root": root, "spots": order, "X": X, "coords": coords, "totals": totals,
            "y_log": lognorm[:, names.index(TARGET)], "y_raw": counts[:, names.index(TARGET)], "adata": adata}


def _fit(section, name, *extra):
    out = section["root"] / name
    code = main(["fit", "--spaceranger", str(section["outs"]), "--target", TARGET, "--features", ",".join(FEATURES),
                 *SOLVER, "--quiet", "--out", str(out), *extra])
    return code, out


def _coef(out):
    return pd.read_csv(out / "coefficients.csv", index_col=0, float_precision="round_trip")


def _direct(section, y, **kw):
    family = kw.pop("family", "gaussian")
    model = S3R("tv", 0.05, 0.05, 0.05, tol=1e-4, max_iter=400, family=family)
    return model.fit(section["X"], y, section["coords"], **kw)


def test_gaussian_fit_normalises_counts_as_the_workflow_does(section, one_torch_thread):
    code, out = _fit(section, "gauss", "--write-h5ad", str(section["root"] / "gauss.h5ad"))
    assert code in (0, 3)
    report = json.loads((out / "fit.json").read_text())
    assert report["normalisation"] == {
        "counts_detected": True, "policy": "auto",
        "features": "library-size normalised to 10000 per spot, then log1p, scaled to unit variance (not centred)",
        "target": "library-size normalised to 10000 per spot, then log1p", "offset": None, "target_sum": 10000.0,
    }
    assert report["inputs"]["spaceranger"] == str(section["outs"])
    coef = _coef(out)
    assert list(coef.index) == FEATURES and list(coef.columns) == section["spots"]
    expected = _direct(section, section["y_log"])
    np.testing.assert_allclose(coef.to_numpy().T, expected.coef_, rtol=0, atol=1e-9)


def test_count_family_keeps_raw_target_with_log_library_size_offset(section, one_torch_thread):
    code, out = _fit(section, "poisson", "--family", "poisson")
    assert code in (0, 3)
    report = json.loads((out / "fit.json").read_text())
    assert report["normalisation"]["target"] == "raw counts (count family)"
    assert report["normalisation"]["offset"] == "log library size (log of each spot's total counts)"
    expected = _direct(section, section["y_raw"], family="poisson", offset=np.log(section["totals"]))
    np.testing.assert_allclose(_coef(out).to_numpy().T, expected.coef_, rtol=0, atol=1e-9)


def test_normalisation_off_fits_the_stored_counts(section, one_torch_thread):
    # float64 on both sides: the features are scaled here and in the CLI by different float operations, and float32
    # iterations (the default "mixed") would carry that last-bit difference to ~1e-7 in the coefficients
    code, out = _fit(section, "off", "--normalisation", "off", "--dtype", "float64")
    assert code in (0, 3)
    report = json.loads((out / "fit.json").read_text())
    # as the workflow's 'preprocess.normalize: false': counts as stored, features still scaled (tests/workflow/test_workflow_io.py)
    assert report["normalisation"] == {"counts_detected": True, "policy": "off", "features": "as stored, scaled to unit variance (not centred)",
                                       "target": "as stored", "offset": None, "target_sum": None}
    sub = section["adata"][section["spots"]]
    X = sub[:, FEATURES].X.toarray().astype(np.float64)
    X = X / X.std(axis=0)
    y = sub[:, TARGET].X.toarray().ravel().astype(np.float64)
    expected = S3R("tv", 0.05, 0.05, 0.05, tol=1e-4, max_iter=400, dtype="float64").fit(X, y, section["coords"])
    np.testing.assert_allclose(_coef(out).to_numpy().T, expected.coef_, rtol=0, atol=1e-9)


def test_write_h5ad_holds_the_input_spots_and_every_result(section, one_torch_thread):
    import anndata

    path = section["root"] / "gauss.h5ad"
    if not path.is_file():
        _fit(section, "gauss", "--write-h5ad", str(path))
    adata = anndata.read_h5ad(path)
    assert adata.n_obs == 3592 and adata.n_vars == section["adata"].n_vars and list(adata.obs_names) == section["spots"]
    coef = _coef(section["root"] / "gauss")
    frame = adata.obsm[f"s3r_{TARGET}"]
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == FEATURES
    np.testing.assert_array_equal(frame.to_numpy(), coef.to_numpy().T)
    with np.load(section["root"] / "gauss" / "coefficients.npz") as npz:
        np.testing.assert_array_equal(adata.obs[f"s3r_{TARGET}_fitted"].to_numpy(), npz["fitted"])
        np.testing.assert_allclose(adata.obs[f"s3r_{TARGET}_observed"].to_numpy(), section["y_log"], rtol=1e-14, atol=0)
    uns = adata.uns["s3r"][TARGET]
    selected = [f for f in FEATURES if np.any(coef.loc[f].to_numpy() != 0)]
    assert list(uns["selected_features"]) == selected and selected
    for f in selected:
        np.testing.assert_array_equal(adata.obs[f"s3r_{TARGET}:{f}"].to_numpy(), coef.loc[f].to_numpy())
    assert uns["parameters"]["lambda_smooth"] == 0.05 and uns["parameters"]["family"] == "gaussian"
    assert uns["normalisation"]["policy"] == "auto"
    # the input's counts, image and scale factors come back unchanged
    assert (adata.X != section["adata"][section["spots"]].X).nnz == 0
    assert "hires" in adata.uns["spatial"]["lib1"]["images"]


def _written_map(section):
    """The results .h5ad of `s3r fit --write-h5ad` (written once per module) and a selected feature to draw."""
    import anndata
    import matplotlib

    matplotlib.use("Agg")
    path = section["root"] / "gauss.h5ad"
    if not path.is_file():
        _fit(section, "gauss", "--write-h5ad", str(path))
    adata = anndata.read_h5ad(path)
    return adata, list(adata.uns["s3r"][TARGET]["selected_features"])[0]


def test_scanpy_draws_a_coefficient_map_over_the_tissue(section, tmp_path, one_torch_thread):
    sc = pytest.importorskip("scanpy")
    adata, feature = _written_map(section)
    # scanpy >= 1.11 points to squidpy for this (a FutureWarning); the call still draws
    ax = sc.pl.spatial(adata, color=f"s3r_{TARGET}:{feature}", show=False, return_fig=False)
    ax = ax[0] if isinstance(ax, list) else ax
    assert len(ax.images) == 1  # the tissue image under the spots
    values = ax.collections[0].get_array()
    np.testing.assert_allclose(np.sort(np.asarray(values)), np.sort(adata.obs[f"s3r_{TARGET}:{feature}"].to_numpy()))
    ax.figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_unknown_target_gene_stops_with_one_line_naming_the_matrix(section, capsys):
    code = main(["fit", "--spaceranger", str(section["outs"]), "--target", "NOPE1", "--features", ",".join(FEATURES),
                 "--out", str(section["root"] / "bad")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err == (f"s3r fit: error: {section['outs'] / 'filtered_feature_bc_matrix.h5'}: target gene 'NOPE1' not in var_names "
                   f"(did you mean 'NOS1', 'CNDP1'?); check the gene name")


@pytest.mark.parametrize("args, message", [
    (["--target", "NOPE1", "--features", "PLP1"], "target gene 'NOPE1' not in var_names (did you mean 'NOS1', 'CNDP1'?); check the gene name"),
    (["--target", TARGET, "--features", "PLP1", "--covariates", "batch"], "covariate column(s) 'batch' not in .obs; .obs has "),
])
def test_a_counts_h5ad_error_names_the_file(section, capsys, args, message):
    """The counts path of an .h5ad (normalised on the way in) names the file, not '<AnnData>' (session 38)."""
    path = section["root"] / "counts.h5ad"
    if not path.exists():
        section["adata"].write_h5ad(path)
    code = main(["tune", "--h5ad", str(path), *args, "--out", str(section["root"] / "bad_h5ad")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"s3r tune: error: {path}: {message}")


def test_two_inputs_and_stray_bin_size_are_refused(section, capsys):
    code = main(["fit", "--spaceranger", str(section["outs"]), "--h5ad", "x.h5ad", "--target", TARGET, "--features", "PLP1", "--out", "x"])
    assert code == 2 and capsys.readouterr().err.strip() == "s3r fit: error: give one input, not --h5ad and --spaceranger"
    code = main(["fit", "--h5ad", "x.h5ad", "--bin-size", "8", "--target", TARGET, "--features", "PLP1", "--out", "x"])
    assert code == 2 and capsys.readouterr().err.strip() == "s3r fit: error: --bin-size selects Visium HD bins and needs --spaceranger"


def test_tune_reads_the_folder_through_the_same_policy(section, one_torch_thread, capsys):
    out = section["root"] / "tuned"
    code = main(["tune", "--spaceranger", str(section["outs"]), "--target", TARGET, "--features", ",".join(FEATURES),
                 "--trials", "2", "--rounds", "1", "--folds", "2", "--max-iter", "100", "--workers", "1", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    trials = pd.read_csv(out / "trials.tsv", sep="\t")
    assert len(trials) == 2 and (trials["state"] == "COMPLETE").all()
    # the folds are blocks of the fitted spots: the in-tissue spots, in the matrix's order
    folds = pd.read_csv(out / "folds.tsv", sep="\t")
    assert sorted(map(str, folds.iloc[:, 0])) == section["spots"]


def test_squidpy_draws_a_coefficient_map_over_the_tissue(section, tmp_path, one_torch_thread):
    sq = pytest.importorskip("squidpy")
    adata, feature = _written_map(section)
    ax = sq.pl.spatial_scatter(adata, color=f"s3r_{TARGET}:{feature}", return_ax=True)
    ax = ax[0] if isinstance(ax, list) else ax
    assert len(ax.images) == 1  # the hires tissue image, found through .uns['spatial'] as written
    values = np.asarray(ax.collections[0].get_array(), dtype=np.float64)
    np.testing.assert_allclose(np.sort(values), np.sort(adata.obs[f"s3r_{TARGET}:{feature}"].to_numpy()))
    ax.figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def _break(outs, how):
    """A copy of a Space Ranger folder broken one way: no matrix, a barcode missing from the positions, nothing in tissue."""
    positions = outs / "spatial" / "tissue_positions.csv"
    if how == "no matrix":
        (outs / "filtered_feature_bc_matrix.h5").unlink()
        return f"{outs / 'filtered_feature_bc_matrix.h5'}: feature-barcode matrix not found; point --spaceranger"
    table = pd.read_csv(positions)
    if how == "barcode not in positions":
        dropped = sorted(table["barcode"])[0]
        table[table["barcode"] != dropped].to_csv(positions, index=False)
        return (f"{positions}: 1 barcode(s) of filtered_feature_bc_matrix.h5 are not in the positions table (e.g. {dropped!r}); "
                f"use the spatial/ folder of the same Space Ranger run")
    table.assign(in_tissue=0).to_csv(positions, index=False)
    return (f"{positions}: no spot of filtered_feature_bc_matrix.h5 is in tissue (in_tissue is 0 for all {len(table)}); "
            f"rerun Space Ranger with a correct tissue alignment")


@pytest.mark.parametrize("how", ["no matrix", "barcode not in positions", "nothing in tissue"])
@pytest.mark.parametrize("command", ["fit", "tune"])
def test_bad_folder_stops_with_one_line_before_any_fit(section, tmp_path, capsys, how, command):
    outs = write_spaceranger(tmp_path / "outs", section["adata"][:300].copy(), n_off_tissue=2, images=False)
    expected = _break(outs, how)
    code = main([command, "--spaceranger", str(outs), "--target", TARGET, "--features", ",".join(FEATURES), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith(f"s3r {command}: error: {expected}"), err
    assert not (tmp_path / "out").exists()


def test_visium_hd_bins_fit_as_the_same_bins_given_as_h5ad(section, tmp_path, one_torch_thread, capsys):
    """Visium HD: binned_outputs/square_008um/ with parquet positions, read with --bin-size 8, fits exactly as the
    same bins handed over as an .h5ad (counts, barcodes and full-resolution pixels as 10x writes them)."""
    pytest.importorskip("pyarrow")
    from tenx_layouts import visium_hd_grid

    bins = visium_hd_grid(section["adata"], 30)
    outs = write_spaceranger(tmp_path / "outs", bins, positions="parquet", hd_bin=8, n_off_tissue=3, images=False)
    assert (outs / "binned_outputs" / "square_008um" / "spatial" / "tissue_positions.parquet").is_file()
    args = ["--target", TARGET, "--features", ",".join(FEATURES), *SOLVER, "--quiet"]
    assert main(["fit", "--spaceranger", str(outs), *args, "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == (f"s3r fit: error: {outs / 'binned_outputs'}: a Visium HD folder; choose a bin size with "
                                               f"--bin-size (sample sheet column 'bin_size'), one of 8 µm")
    code = main(["fit", "--spaceranger", str(outs), "--bin-size", "8", *args, "--out", str(tmp_path / "hd"),
                 "--write-h5ad", str(tmp_path / "hd.h5ad")])
    assert code in (0, 3)
    report = json.loads((tmp_path / "hd" / "fit.json").read_text())
    assert report["inputs"]["bin_size_um"] == 8 and report["normalisation"]["policy"] == "auto"
    coef = _coef(tmp_path / "hd")
    assert list(coef.columns) == list(bins.obs_names)  # 900 in-tissue bins, the off-tissue barcodes dropped
    bins.obsm["spatial"] = bins.obsm["spatial"] * 10  # full-resolution pixels, as the positions table holds them
    bins.write_h5ad(tmp_path / "bins.h5ad")
    code = main(["fit", "--h5ad", str(tmp_path / "bins.h5ad"), *args, "--out", str(tmp_path / "ref")])
    assert code in (0, 3)
    np.testing.assert_array_equal(coef.to_numpy(), _coef(tmp_path / "ref").to_numpy())
    assert json.loads((tmp_path / "ref" / "fit.json").read_text())["normalisation"] == report["normalisation"]
    import anndata

    written = anndata.read_h5ad(tmp_path / "hd.h5ad")
    np.testing.assert_array_equal(written.obsm["spatial"], bins.obsm["spatial"])
    assert written.uns["spatial"]["lib1"]["scalefactors"]["bin_size_um"] == 8.0


def test_xenium_folder_fits_as_the_same_cells_given_as_h5ad(section, tmp_path, one_torch_thread):
    """s3r fit --xenium: controls dropped, centroids in µm as coordinates, the counts policy applied; the same as
    the genes' counts and centroids handed over as an .h5ad."""
    import anndata
    from tenx_layouts import write_xenium

    cells = section["adata"][:500].copy()
    ids = [f"cell{i:05d}-1" for i in range(cells.n_obs)]
    centroids = np.asarray(cells.obsm["spatial"], dtype=np.float64) * 2.5
    outs = write_xenium(tmp_path / "outs", cells.X, ids, [str(g) for g in cells.var_names], centroids, n_controls=2)
    args = ["--target", TARGET, "--features", ",".join(FEATURES), *SOLVER, "--quiet"]
    code = main(["fit", "--xenium", str(outs.parent), *args, "--out", str(tmp_path / "xen")])
    assert code in (0, 3)
    report = json.loads((tmp_path / "xen" / "fit.json").read_text())
    assert report["inputs"]["xenium"] == str(outs.parent) and report["normalisation"]["counts_detected"]
    anndata.AnnData(X=cells.X.copy(), obs=pd.DataFrame(index=ids), var=pd.DataFrame(index=[str(g) for g in cells.var_names]),
                    obsm={"spatial": centroids}).write_h5ad(tmp_path / "cells.h5ad")
    code = main(["fit", "--h5ad", str(tmp_path / "cells.h5ad"), *args, "--out", str(tmp_path / "ref")])
    assert code in (0, 3)
    coef, ref = _coef(tmp_path / "xen"), _coef(tmp_path / "ref")
    assert list(coef.columns) == ids and list(coef.index) == FEATURES
    np.testing.assert_array_equal(coef.to_numpy(), ref.to_numpy())
    assert json.loads((tmp_path / "ref" / "fit.json").read_text())["normalisation"] == report["normalisation"]


def test_report_with_the_counts_input_draws_the_fits_own_scale(section, tmp_path, capsys, one_torch_thread):
    """``s3r report`` given the fit's counts input prepares it as ``s3r fit`` did (log1p of normalised counts), so its
    observed-vs-predicted figure is the one the stored values give; before session 38 it compared raw counts with
    log-scale predictions. Data of another target is refused in one line."""
    import shutil

    code, out = _fit(section, "report_scale")
    assert code == 0
    old = tmp_path / "fit"  # a fit directory without stored values: the report must recompute them from the input
    shutil.copytree(out, old)
    with np.load(old / "coefficients.npz") as f:
        np.savez_compressed(old / "coefficients.npz", **{k: f[k] for k in f.files if k not in ("observed", "fitted")})
    data = ["--spaceranger", str(section["outs"]), "--features", ",".join(FEATURES)]
    assert main(["report", "--fit", str(old), *data, "--target", TARGET, "--out", str(tmp_path / "with")]) == 0
    assert main(["report", "--fit", str(out), "--out", str(tmp_path / "stored")]) == 0
    assert (tmp_path / "with" / "observed_vs_predicted.png").read_bytes() == (tmp_path / "stored" / "observed_vs_predicted.png").read_bytes()
    capsys.readouterr()
    other = next(str(g) for g in section["adata"].var_names if str(g) not in (TARGET, *FEATURES))
    assert main(["report", "--fit", str(out), *data, "--target", other, "--out", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err.strip() == (f"s3r report: error: {section['outs']}: target {other!r} but {out} is a fit of 'MBP'; "
                                               "pass the fit's target (--target / --target-column MBP)")
