"""Test helpers: write Space Ranger and Xenium output folders in 10x's documented layouts.

Written from the layout documentation (10x HDF5 feature-barcode matrix; Space Ranger spatial/ files; Xenium
cells table), so the readers are checked against files they did not write themselves.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

DLPFC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "dlpfc_151675.h5ad"
POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
SCALEFACTORS = {"spot_diameter_fullres": 89.5, "tissue_hires_scalef": 0.1, "fiducial_diameter_fullres": 144.6,
                "tissue_lowres_scalef": 0.03}


def write_10x_h5(path, counts, barcodes, ids, names, types, *, genome="GRCh38", library_id="lib1"):
    """counts: barcodes × features (any sparse/dense); stored as 10x does: CSC over barcodes (features × barcodes)."""
    import h5py

    csr = sp.csr_matrix(counts)  # rows = barcodes: its arrays are the features × barcodes CSC arrays
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
        m.create_dataset("data", data=csr.data.astype(np.int32), compression="gzip")
        m.create_dataset("indices", data=csr.indices.astype(np.int64), compression="gzip")
        m.create_dataset("indptr", data=csr.indptr.astype(np.int64))
        m.create_dataset("shape", data=np.array([csr.shape[1], csr.shape[0]], dtype=np.int32))
        g = m.create_group("features")
        g.create_dataset("id", data=np.array(ids, dtype="S"))
        g.create_dataset("name", data=np.array(names, dtype="S"))
        g.create_dataset("feature_type", data=np.array(types, dtype="S"))
        g.create_dataset("genome", data=np.array([genome] * len(ids), dtype="S"))
        g.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        f.attrs["library_ids"] = np.array([library_id], dtype="S")
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = 2


def load_dlpfc(n_genes: int | None = None):
    import anndata

    adata = anndata.read_h5ad(DLPFC)
    if n_genes is not None:
        adata = adata[:, :n_genes].copy()
    return adata


def visium_positions(adata, n_off_tissue: int = 0, seed: int = 0) -> pd.DataFrame:
    """Positions table of the spots (in tissue) plus off-tissue barcodes, full-resolution pixels = 10 × coordinates."""
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    table = pd.DataFrame({
        "barcode": [str(b) for b in adata.obs_names],
        "in_tissue": 1,
        "array_row": np.round(xy[:, 1] / 4).astype(int),
        "array_col": np.round(xy[:, 0] / 4).astype(int),
        "pxl_row_in_fullres": np.round(xy[:, 1] * 10).astype(int),
        "pxl_col_in_fullres": np.round(xy[:, 0] * 10).astype(int),
    })
    rng = np.random.default_rng(seed)
    off = pd.DataFrame({
        "barcode": [f"OFFTISSUE{i:06d}-1" for i in range(n_off_tissue)],
        "in_tissue": 0,
        "array_row": rng.integers(0, 77, n_off_tissue),
        "array_col": rng.integers(0, 127, n_off_tissue),
        "pxl_row_in_fullres": rng.integers(0, 5000, n_off_tissue),
        "pxl_col_in_fullres": rng.integers(0, 5000, n_off_tissue),
    })
    return pd.concat([table, off], ignore_index=True)[POSITION_COLUMNS]


def visium_hd_grid(adata, side: int, bin_um: int = 8):
    """The first side² spots of ``adata`` as Visium HD square bins: barcodes s_008um_<row>_<col>-1 (10x's naming),
    a square grid (coordinates 4 × row/col, so array_row/array_col are the grid indices), rows in barcode order."""
    sub = adata[: side * side].copy()
    rows, cols = np.divmod(np.arange(side * side), side)
    sub.obs_names = [f"s_{bin_um:03d}um_{r:05d}_{c:05d}-1" for r, c in zip(rows, cols)]
    sub.obsm["spatial"] = np.column_stack([cols * 4.0, rows * 4.0])
    return sub


def write_spaceranger(outs, adata, *, positions: str = "csv", n_off_tissue: int = 5, images: bool = True,
                      antibody: bool = True, hd_bin: int | None = None) -> Path:
    """A Space Ranger outs/ folder for ``adata``'s spots (counts in .X) plus ``n_off_tissue`` off-tissue barcodes in the
    matrix (all-zero but one count) and the positions. ``positions``: csv (SR ≥ 2, header), list (SR < 2, no
    header) or parquet (Visium HD). ``hd_bin``: write under binned_outputs/square_<bin>um/. ``antibody``: one
    'Antibody Capture' feature the reader must drop."""
    outs = Path(outs)
    folder = outs / "binned_outputs" / f"square_{hd_bin:03d}um" if hd_bin else outs
    (folder / "spatial").mkdir(parents=True, exist_ok=True)
    table = visium_positions(adata, n_off_tissue)
    counts = sp.csr_matrix(adata.X, dtype=np.float64)
    extra = sp.csr_matrix((np.ones(n_off_tissue), (np.arange(n_off_tissue), np.zeros(n_off_tissue, int))), shape=(n_off_tissue, counts.shape[1]))
    counts = sp.vstack([counts, extra]).tocsr()
    ids = list(adata.var["gene_ids"]) if "gene_ids" in adata.var else [f"ENSG{j:011d}" for j in range(adata.n_vars)]
    names, types = [str(v) for v in adata.var_names], ["Gene Expression"] * adata.n_vars
    if antibody:
        counts = sp.hstack([counts, sp.csr_matrix(np.full((counts.shape[0], 1), 7.0))]).tocsr()
        ids, names, types = ids + ["CD3"], names + ["CD3_TotalSeqC"], types + ["Antibody Capture"]
    # the matrix lists barcodes in sorted order, the positions table in its own order
    order = np.argsort(table["barcode"].to_numpy(), kind="stable")
    write_10x_h5(folder / "filtered_feature_bc_matrix.h5", counts[order], table["barcode"].to_numpy()[order], ids, names, types)
    shuffled = table.sample(frac=1.0, random_state=1)
    if positions == "csv":
        shuffled.to_csv(folder / "spatial" / "tissue_positions.csv", index=False)
    elif positions == "list":
        shuffled.to_csv(folder / "spatial" / "tissue_positions_list.csv", index=False, header=False)
    elif positions == "parquet":
        shuffled.to_parquet(folder / "spatial" / "tissue_positions.parquet", index=False)
    else:
        raise ValueError(positions)
    factors = dict(SCALEFACTORS, **({"bin_size_um": float(hd_bin), "microns_per_pixel": 0.27} if hd_bin else {}))
    (folder / "spatial" / "scalefactors_json.json").write_text(json.dumps(factors))
    if images:
        import matplotlib.image

        full = max(table["pxl_row_in_fullres"].max(), table["pxl_col_in_fullres"].max()) + 200
        for res, key in (("hires", "tissue_hires_scalef"), ("lowres", "tissue_lowres_scalef")):
            side = int(full * SCALEFACTORS[key])
            yy, xx = np.mgrid[0:side, 0:side] / max(side, 1)
            img = np.stack([0.9 - 0.3 * xx, 0.8 - 0.2 * yy, 0.85 * np.ones_like(xx)], axis=-1)
            matplotlib.image.imsave(folder / "spatial" / f"tissue_{res}_image.png", img)
    return outs


CONTROL_TYPES = ("Negative Control Probe", "Negative Control Codeword", "Unassigned Codeword")


def write_xenium(outs, counts, cell_ids, genes, centroids, *, n_controls: int = 3, cells: str = "csv", seed: int = 0) -> Path:
    """A Xenium outs/ folder: cell_feature_matrix.h5 (genes, then ``n_controls`` features of each control type
    with a few counts) and cells.csv.gz or cells.parquet with the documented columns."""
    outs = Path(outs)
    outs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(counts, dtype=np.float64)
    n = counts.shape[0]
    ctrl = sp.random(n, n_controls * len(CONTROL_TYPES), density=0.01, random_state=seed, data_rvs=lambda k: np.ones(k)).tocsr()
    full = sp.hstack([counts, ctrl]).tocsr()
    names = list(genes) + [f"{t.split()[0]}_{t.split()[-1]}_{i}" for t in CONTROL_TYPES for i in range(n_controls)]
    types = ["Gene Expression"] * len(genes) + [t for t in CONTROL_TYPES for _ in range(n_controls)]
    ids = [f"ENSG{j:011d}" for j in range(len(genes))] + names[len(genes):]
    write_10x_h5(outs / "cell_feature_matrix.h5", full, cell_ids, ids, names, types)
    gene_counts = np.asarray(counts.sum(axis=1)).ravel()
    ctrl_counts = np.asarray(ctrl.sum(axis=1)).ravel()
    table = pd.DataFrame({
        "cell_id": list(cell_ids),
        "x_centroid": np.asarray(centroids)[:, 0],
        "y_centroid": np.asarray(centroids)[:, 1],
        "transcript_counts": gene_counts.astype(int),
        "control_probe_counts": ctrl_counts.astype(int),
        "control_codeword_counts": 0,
        "unassigned_codeword_counts": 0,
        "total_counts": (gene_counts + ctrl_counts).astype(int),
        "cell_area": rng.uniform(20, 200, n).round(4),
        "nucleus_area": rng.uniform(5, 50, n).round(4),
    }).iloc[rng.permutation(n)]
    if cells == "csv":
        with gzip.open(outs / "cells.csv.gz", "wt") as fh:
            table.to_csv(fh, index=False)
    else:
        table.to_parquet(outs / "cells.parquet", index=False)
    return outs
