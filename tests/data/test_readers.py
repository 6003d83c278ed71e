"""Space Ranger and Xenium folders, written in 10x's documented layouts from the real DLPFC section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from s3r.errors import S3RInputError
from s3r.readers import read_spaceranger, read_spatial, read_xenium
from s3r.readers.tenx_h5 import unique_names
from tenx_layouts import DLPFC, SCALEFACTORS, load_dlpfc, write_10x_h5, write_spaceranger, write_xenium

needs_dlpfc = pytest.mark.skipif(not DLPFC.is_file(), reason="../shared/data/real/dlpfc_151675.h5ad is absent")
try:
    import pyarrow  # noqa: F401

    HAVE_PYARROW = True
except ImportError:
    HAVE_PYARROW = False


@pytest.fixture(scope="module")
def dlpfc():
    if not DLPFC.is_file():
        pytest.skip("../shared/data/real/dlpfc_151675.h5ad is absent")
    return load_dlpfc(n_genes=200)


@pytest.fixture(scope="module")
def sr_folder(dlpfc, tmp_path_factory):
    return write_spaceranger(tmp_path_factory.mktemp("sr") / "outs", dlpfc, positions="csv", n_off_tissue=5)


def _same_counts(adata, ref):
    a = adata[[str(s) for s in ref.obs_names], [str(g) for g in ref.var_names]].X
    assert sp.issparse(a) and a.dtype == np.float32
    assert (a != sp.csr_matrix(ref.X)).nnz == 0


def test_spaceranger_reads_in_tissue_spots_with_exact_counts_and_positions(sr_folder, dlpfc):
    adata = read_spaceranger(sr_folder)
    # the 5 off-tissue barcodes of the matrix are dropped; the spots come in the matrix's (sorted) order
    assert adata.n_obs == dlpfc.n_obs == 3592
    assert list(adata.obs_names) == sorted(str(s) for s in dlpfc.obs_names)
    # the Antibody Capture feature is dropped; genes keep their ids
    assert list(adata.var_names) == [str(g) for g in dlpfc.var_names]
    assert list(adata.var["gene_ids"]) == list(dlpfc.var["gene_ids"])
    assert set(adata.var["feature_types"]) == {"Gene Expression"}
    _same_counts(adata, dlpfc)
    # .obsm['spatial'] = (pxl_col, pxl_row) in full-resolution pixels, as scanpy expects
    xy = np.asarray(dlpfc[adata.obs_names].obsm["spatial"])
    np.testing.assert_array_equal(adata.obsm["spatial"], np.column_stack([np.round(xy[:, 0] * 10), np.round(xy[:, 1] * 10)]))
    assert adata.obs["in_tissue"].eq(1).all()
    lib = adata.uns["spatial"]["lib1"]
    assert lib["scalefactors"] == SCALEFACTORS
    assert lib["images"]["hires"].ndim == 3 and lib["images"]["lowres"].shape[0] < lib["images"]["hires"].shape[0]
    assert adata.uns["s3r_input"]["n_barcodes"] == 3597 and adata.uns["s3r_input"]["positions"] == "tissue_positions.csv"


def test_positions_list_without_header_reads_the_same(dlpfc, tmp_path, sr_folder):
    old = write_spaceranger(tmp_path / "outs", dlpfc, positions="list", images=False)
    a, b = read_spaceranger(old), read_spaceranger(sr_folder)
    assert a.uns["s3r_input"]["positions"] == "tissue_positions_list.csv"
    assert list(a.obs_names) == list(b.obs_names) and (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(a.obsm["spatial"], b.obsm["spatial"])
    pd.testing.assert_frame_equal(a.obs, b.obs)
    assert "images" not in a.uns["spatial"]["lib1"] or a.uns["spatial"]["lib1"]["images"] == {}


def test_run_folder_is_accepted_for_its_outs(sr_folder):
    assert read_spaceranger(sr_folder.parent).n_obs == 3592


@pytest.mark.skipif(not HAVE_PYARROW, reason="pyarrow not installed")
def test_visium_hd_bins_from_parquet(dlpfc, tmp_path):
    outs = write_spaceranger(tmp_path / "outs", dlpfc, positions="parquet", hd_bin=8, images=False)
    with pytest.raises(S3RInputError, match=r"binned_outputs: a Visium HD folder; choose a bin size with --bin-size .* one of 8 µm"):
        read_spaceranger(outs)
    with pytest.raises(S3RInputError, match=r"square_016um: no 16 µm bins in this Visium HD run; use one of 8 µm"):
        read_spaceranger(outs, bin_size=16)
    adata = read_spaceranger(outs, bin_size=8)
    assert adata.n_obs == 3592 and adata.uns["s3r_input"]["bin_size_um"] == 8
    # the bins' folder itself, or binned_outputs/, name the same bins; a bin size that contradicts the folder stops
    square = outs / "binned_outputs" / "square_008um"
    assert read_spaceranger(square).uns["s3r_input"]["bin_size_um"] == 8
    assert read_spaceranger(square, bin_size=8).n_obs == 3592
    assert read_spaceranger(outs / "binned_outputs", bin_size=8).n_obs == 3592
    with pytest.raises(S3RInputError) as err:
        read_spaceranger(square, bin_size=16)
    assert str(err.value) == f"{square}: these are not 16 µm bins; give --bin-size 8 or the outs/ folder"
    assert adata.uns["spatial"]["lib1"]["scalefactors"]["bin_size_um"] == 8.0
    _same_counts(adata, dlpfc)


def test_parquet_without_pyarrow_says_what_to_install(dlpfc, tmp_path, monkeypatch):
    import builtins

    folder = write_spaceranger(tmp_path / "outs", dlpfc, positions="csv", images=False)
    (folder / "spatial" / "tissue_positions.csv").rename(folder / "spatial" / "tissue_positions.parquet")
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow":
            raise ImportError("no pyarrow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(S3RInputError) as err:
        read_spaceranger(folder)
    assert str(err.value) == f"{folder / 'spatial' / 'tissue_positions.parquet'}: reading Visium HD parquet positions needs pyarrow; pip install pyarrow"


def test_bad_spaceranger_folders_stop_with_one_line(dlpfc, tmp_path):
    folder = write_spaceranger(tmp_path / "a" / "outs", dlpfc, images=False)
    matrix = folder / "filtered_feature_bc_matrix.h5"
    matrix.rename(folder / "moved.h5")
    with pytest.raises(S3RInputError) as err:
        read_spaceranger(folder)
    assert str(err.value) == (f"{matrix}: feature-barcode matrix not found; point --spaceranger (sample sheet column 'spaceranger') "
                              f"at Space Ranger's outs/ folder (it holds filtered_feature_bc_matrix.h5 and spatial/)")

    folder = write_spaceranger(tmp_path / "b" / "outs", dlpfc, images=False)
    pos = pd.read_csv(folder / "spatial" / "tissue_positions.csv")
    dropped = pos["barcode"].iloc[0]
    pos.iloc[1:].to_csv(folder / "spatial" / "tissue_positions.csv", index=False)
    with pytest.raises(S3RInputError) as err:
        read_spaceranger(folder)
    assert str(err.value) == (f"{folder / 'spatial' / 'tissue_positions.csv'}: 1 barcode(s) of filtered_feature_bc_matrix.h5 are not in "
                              f"the positions table (e.g. {dropped!r}); use the spatial/ folder of the same Space Ranger run")

    pos.assign(in_tissue=0).to_csv(folder / "spatial" / "tissue_positions.csv", index=False)
    with pytest.raises(S3RInputError) as err:
        read_spaceranger(folder)
    assert str(err.value) == (f"{folder / 'spatial' / 'tissue_positions.csv'}: no spot of filtered_feature_bc_matrix.h5 is in tissue "
                              f"(in_tissue is 0 for all 3597); rerun Space Ranger with a correct tissue alignment")

    (folder / "spatial" / "tissue_positions.csv").unlink()
    with pytest.raises(S3RInputError, match=r"spatial: no tissue_positions.csv, tissue_positions_list.csv or tissue_positions.parquet; copy"):
        read_spaceranger(folder)
    with pytest.raises(S3RInputError, match=r"nowhere: Space Ranger folder not found; point --spaceranger"):
        read_spaceranger(tmp_path / "nowhere")
    with pytest.raises(S3RInputError, match=r"this folder has no bins, drop --bin-size"):
        read_spaceranger(tmp_path / "a" / "outs", bin_size=8)


def test_unique_gene_names_keep_first_and_number_repeats():
    assert unique_names(["A", "B", "A", "A", "A-1"]) == ["A", "B", "A-2", "A-3", "A-1"]


# ---------------------------------------------------------------------------------------------------------
# Xenium
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xenium_cells(dlpfc):
    # the DLPFC spots stand in for cells: ids like Xenium's, centroids in µm
    ids = [f"aaa{i:05d}-1" for i in range(dlpfc.n_obs)]
    return dlpfc, ids, np.asarray(dlpfc.obsm["spatial"], dtype=np.float64) * 2.5


@pytest.mark.parametrize("cells", ["csv", "parquet"])
def test_xenium_reads_cells_in_matrix_order_and_drops_controls(xenium_cells, tmp_path, cells):
    if cells == "parquet" and not HAVE_PYARROW:
        pytest.skip("pyarrow not installed")
    dlpfc, ids, centroids = xenium_cells
    genes = [str(g) for g in dlpfc.var_names]
    outs = write_xenium(tmp_path / "outs", dlpfc.X, ids, genes, centroids, cells=cells)
    adata = read_xenium(outs)
    assert list(adata.obs_names) == ids and list(adata.var_names) == genes
    assert (adata.X != sp.csr_matrix(dlpfc.X)).nnz == 0
    np.testing.assert_array_equal(adata.obsm["spatial"], centroids)
    assert adata.uns["s3r_input"]["dropped_features"] == {"Negative Control Codeword": 3, "Negative Control Probe": 3, "Unassigned Codeword": 3}
    assert adata.uns["s3r_input"]["cells"] == ("cells.csv.gz" if cells == "csv" else "cells.parquet")
    np.testing.assert_array_equal(adata.obs["transcript_counts"].to_numpy(), np.asarray(dlpfc.X.sum(axis=1)).ravel().astype(int))
    assert "cell_id" not in adata.obs.columns


def test_bad_xenium_folders_stop_with_one_line(xenium_cells, tmp_path):
    dlpfc, ids, centroids = xenium_cells
    outs = write_xenium(tmp_path / "outs", dlpfc.X, ids, [str(g) for g in dlpfc.var_names], centroids)
    cells = pd.read_csv(outs / "cells.csv.gz")
    missing = cells["cell_id"].iloc[0]
    cells.iloc[1:].to_csv(outs / "cells.csv.gz", index=False, compression="gzip")
    with pytest.raises(S3RInputError) as err:
        read_xenium(outs)
    assert str(err.value) == (f"{outs / 'cells.csv.gz'}: 1 cell(s) of cell_feature_matrix.h5 are not in the cell table "
                              f"(e.g. {missing!r}); use the cell table of the same Xenium run")
    (outs / "cells.csv.gz").unlink()
    with pytest.raises(S3RInputError) as err:
        read_xenium(outs)
    assert str(err.value) == (f"{outs}: neither cells.parquet nor cells.csv.gz found; point --xenium (sample sheet column 'xenium') "
                              f"at the Xenium outs/ folder (it holds both)")
    (outs / "cell_feature_matrix.h5").unlink()
    with pytest.raises(S3RInputError, match=r"cell_feature_matrix.h5: feature-barcode matrix not found; point --xenium"):
        read_xenium(outs)
    (outs / "cell_feature_matrix.h5").write_text("not hdf5")
    with pytest.raises(S3RInputError, match=r"cell_feature_matrix.h5: not an HDF5 file; give the .h5 matrix"):
        read_xenium(outs)


def test_read_spatial_dispatch_and_errors(tmp_path):
    with pytest.raises(S3RInputError, match="a bin size applies to Visium HD Space Ranger folders only"):
        read_spatial("xenium", tmp_path, bin_size=8)
    with pytest.raises(S3RInputError, match="h5ad file not found"):
        read_spatial("h5ad", tmp_path / "x.h5ad")


def test_small_handmade_matrix_round_trip(tmp_path):
    """Without the real data: the exact CSC-over-barcodes layout, duplicated symbols, controls."""
    counts = np.array([[0, 2, 1, 0], [3, 0, 0, 1], [0, 0, 5, 0]])
    write_10x_h5(tmp_path / "cell_feature_matrix.h5", counts, ["c1", "c2", "c3"], ["e1", "e2", "e3", "NEG"],
                 ["G1", "G2", "G1", "NegControlProbe_1"], ["Gene Expression"] * 3 + ["Negative Control Probe"])
    pd.DataFrame({"cell_id": ["c3", "c1", "c2"], "x_centroid": [3.0, 1.0, 2.0], "y_centroid": [30.0, 10.0, 20.0]}).to_csv(
        tmp_path / "cells.csv.gz", index=False, compression="gzip")
    adata = read_xenium(tmp_path)
    assert list(adata.var_names) == ["G1", "G2", "G1-1"] and list(adata.var["gene_ids"]) == ["e1", "e2", "e3"]
    np.testing.assert_array_equal(adata.X.toarray(), counts[:, :3])
    np.testing.assert_array_equal(adata.obsm["spatial"], [[1, 10], [2, 20], [3, 30]])


def test_results_h5ad_is_written_atomically(tmp_path, monkeypatch):
    """An interrupted write (here: anndata failing half-way) leaves neither the file nor a temporary beside it."""
    import anndata

    from s3r.anndata_out import write_results_h5ad

    adata = anndata.AnnData(X=np.ones((3, 2), dtype=np.float32))
    path = write_results_h5ad(adata, tmp_path / "out.h5ad")
    assert anndata.read_h5ad(path).shape == (3, 2)

    def half_then_fail(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\x89HDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(anndata.AnnData, "write_h5ad", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_results_h5ad(adata, tmp_path / "new.h5ad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5ad"]
    with pytest.raises(OSError):
        write_results_h5ad(adata, path)  # an existing result is kept whole, not truncated
    assert anndata.read_h5ad(path).shape == (3, 2)
