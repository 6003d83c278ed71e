"""A Xenium ``outs/`` folder as AnnData: one row per cell, centroids in µm, gene features only.

Layout per 10x's Xenium output documentation: ``cell_feature_matrix.h5`` (the 10x HDF5 matrix, whose
``feature_type`` marks control probes and codewords) and ``cells.parquet`` or ``cells.csv.gz`` (``cell_id``,
``x_centroid``, ``y_centroid`` in µm, per-cell counts and areas). Controls are dropped because they measure
background, not expression, and would otherwise enter library sizes and feature lists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError
from s3r.readers.tenx_h5 import read_feature_barcode_h5, unique_names

_FIX = "point --xenium (sample sheet column 'xenium') at the Xenium outs/ folder"
CELL_COLUMNS = ("cell_id", "x_centroid", "y_centroid")


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _read_cells(folder: Path) -> tuple[pd.DataFrame, Path]:
    parquet, csv = folder / "cells.parquet", folder / "cells.csv.gz"
    if parquet.is_file() and (_has_pyarrow() or not csv.is_file()):
        if not _has_pyarrow():
            raise S3RInputError(f"{parquet}: reading cells.parquet needs pyarrow; pip install pyarrow (or provide cells.csv.gz)")
        cells, path = pd.read_parquet(parquet), parquet
    elif csv.is_file():
        cells, path = pd.read_csv(csv, dtype={"cell_id": str}, float_precision="round_trip"), csv
    else:
        raise S3RInputError(f"{folder}: neither cells.parquet nor cells.csv.gz found; {_FIX} (it holds both)")
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise S3RInputError(f"{path}: missing column(s) {', '.join(missing)}; the cell table needs cell_id, x_centroid, y_centroid")
    ids = cells["cell_id"]
    cells.index = pd.Index(ids.str.decode("utf-8") if ids.dtype == object and len(ids) and isinstance(ids.iloc[0], bytes) else ids.astype(str))
    return cells, path


def read_xenium(path: str | Path):
    """Read a Xenium outs/ folder into AnnData: raw counts (float32) of 'Gene Expression' features, cells in
    the matrix's order, the cell table in .obs, centroids (µm) in .obsm['spatial']."""
    import anndata

    folder = Path(path)
    if not folder.is_dir():
        raise S3RInputError(f"{folder}: Xenium folder not found; {_FIX}")
    if not (folder / "cell_feature_matrix.h5").exists() and (folder / "outs").is_dir():
        folder = folder / "outs"
    matrix_path = folder / "cell_feature_matrix.h5"
    mat = read_feature_barcode_h5(matrix_path, fix=f"{_FIX} (it holds cell_feature_matrix.h5 and cells.parquet/cells.csv.gz)")
    cells, cells_path = _read_cells(folder)

    kinds = mat.features["feature_type"]
    genes = (kinds == "Gene Expression").to_numpy()
    if not genes.any():
        raise S3RInputError(f"{matrix_path}: no 'Gene Expression' features (types: {', '.join(sorted(set(kinds)))}); give the run's cell_feature_matrix.h5")
    barcodes = pd.Index(mat.barcodes)
    order = cells.index.get_indexer(barcodes)
    if (order < 0).any():
        first = barcodes[np.flatnonzero(order < 0)[0]]
        raise S3RInputError(
            f"{cells_path}: {int((order < 0).sum())} cell(s) of {matrix_path.name} are not in the cell table "
            f"(e.g. {first!r}); use the cell table of the same Xenium run"
        )
    table = cells.iloc[order]
    centroids = table[["x_centroid", "y_centroid"]].to_numpy(dtype=np.float64)
    if not np.isfinite(centroids).all():
        bad = barcodes[np.flatnonzero(~np.isfinite(centroids).all(axis=1))[0]]
        raise S3RInputError(f"{cells_path}: cell {bad!r} has no finite centroid; drop it or rerun the segmentation")
    feats = mat.features.loc[genes].reset_index(drop=True)
    var = pd.DataFrame(
        {"gene_ids": feats["id"].to_numpy(), "feature_types": feats["feature_type"].to_numpy(), "genome": feats["genome"].to_numpy()},
        index=pd.Index(unique_names(list(feats["name"])), dtype=object),
    )
    obs = table.drop(columns=["cell_id"]).copy()
    obs.index = pd.Index(barcodes.astype(str), dtype=object)
    dropped = kinds[~genes].value_counts().sort_index()
    adata = anndata.AnnData(X=mat.counts[:, np.flatnonzero(genes)], obs=obs, var=var, obsm={"spatial": centroids})
    adata.uns["s3r_input"] = {"format": "xenium", "path": str(folder), "matrix": str(matrix_path), "cells": cells_path.name, "units": "µm",
                              "dropped_features": {str(k): int(v) for k, v in dropped.items()}}
    return adata
