"""A Space Ranger ``outs/`` folder (Visium, Visium HD bins) as AnnData, in-tissue spots only.

The layout follows 10x's documentation of Space Ranger outputs: ``filtered_feature_bc_matrix.h5``;
``spatial/tissue_positions.csv`` (Space Ranger ≥ 2.0, with a header), ``spatial/tissue_positions_list.csv``
(earlier versions, no header) or ``spatial/tissue_positions.parquet`` (Visium HD bins, under
``binned_outputs/square_XXXum/``); ``spatial/scalefactors_json.json``; ``spatial/tissue_{hires,lowres}_image.png``.
The result uses the conventions scanpy and squidpy read: ``.obsm['spatial']`` = full-resolution pixel
(x = column, y = row), ``.uns['spatial'][library_id]`` = {'images', 'scalefactors', 'metadata'}.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError
from s3r.readers.tenx_h5 import read_feature_barcode_h5, unique_names

POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
_FIX = "point --spaceranger (sample sheet column 'spaceranger') at Space Ranger's outs/ folder"


def spaceranger_folder(path: str | Path, bin_size: int | None = None) -> Path:
    """The folder holding the matrix: outs/ itself, a run folder's outs/, or a Visium HD bin folder."""
    path = Path(path)
    if not path.is_dir():
        raise S3RInputError(f"{path}: Space Ranger folder not found; {_FIX}")
    if not (path / "filtered_feature_bc_matrix.h5").exists() and (path / "outs").is_dir():
        path = path / "outs"
    if path.name == "binned_outputs":  # the bins' parent given instead of outs/
        path = path.parent
    binned = path / "binned_outputs"
    if binned.is_dir():
        sizes = sorted(int(p.name[len("square_"):-2]) for p in binned.glob("square_*um") if p.name[7:-2].isdigit())
        if bin_size is None:
            raise S3RInputError(
                f"{binned}: a Visium HD folder; choose a bin size with --bin-size (sample sheet column 'bin_size'), "
                f"one of {', '.join(map(str, sizes)) or 'none found'} µm"
            )
        folder = binned / f"square_{int(bin_size):03d}um"
        if not folder.is_dir():
            raise S3RInputError(f"{folder}: no {bin_size} µm bins in this Visium HD run; use one of {', '.join(map(str, sizes))} µm")
        return folder
    if bin_size is not None and not path.name.startswith("square_"):
        raise S3RInputError(f"{path}: --bin-size is for Visium HD (outs/binned_outputs/); this folder has no bins, drop --bin-size")
    if bin_size is not None and path.name != f"square_{int(bin_size):03d}um":
        raise S3RInputError(f"{path}: these are not {bin_size} µm bins; give --bin-size {path.name[7:-2].lstrip('0')} or the outs/ folder")
    return path


def _read_positions(spatial: Path) -> tuple[pd.DataFrame, Path]:
    candidates = [spatial / "tissue_positions.csv", spatial / "tissue_positions_list.csv", spatial / "tissue_positions.parquet"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise S3RInputError(
            f"{spatial}: no tissue_positions.csv, tissue_positions_list.csv or tissue_positions.parquet; "
            f"copy the spatial/ folder of the Space Ranger run next to the matrix"
        )
    if found.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401  (pandas needs it for parquet)
        except ImportError:
            raise S3RInputError(f"{found}: reading Visium HD parquet positions needs pyarrow; pip install pyarrow") from None
        table = pd.read_parquet(found)
    elif found.name == "tissue_positions_list.csv":  # Space Ranger < 2.0: the same six columns without a header
        table = pd.read_csv(found, header=None, dtype={0: str})
        if table.shape[1] != 6:
            raise S3RInputError(f"{found}: {table.shape[1]} columns, expected 6 ({', '.join(POSITION_COLUMNS)}); the file is not a Space Ranger positions list")
        table.columns = POSITION_COLUMNS
    else:
        table = pd.read_csv(found, dtype={"barcode": str})
    missing = [c for c in POSITION_COLUMNS if c not in table.columns]
    if missing:
        raise S3RInputError(f"{found}: missing column(s) {', '.join(missing)}; expected the Space Ranger header {','.join(POSITION_COLUMNS)}")
    return table.set_index(table["barcode"].astype(str)), found


def _read_images(spatial: Path) -> dict:
    images = {}
    for res in ("hires", "lowres"):
        png = spatial / f"tissue_{res}_image.png"
        if png.is_file():
            import matplotlib.image

            image = matplotlib.image.imread(png)
            if image.dtype.kind == "f":  # PNGs decode to float32 in [0, 1]; 8 bits per channel is what they hold
                image = np.round(image * 255).astype(np.uint8)
            images[res] = image
    return images


def read_spaceranger(path: str | Path, *, bin_size: int | None = None, images: bool = True):
    """Read a Space Ranger outs/ folder (or one Visium HD bin size) into AnnData: in-tissue spots, raw counts
    in .X (float32, exact), gene symbols made unique as var_names, 'Gene Expression' features only."""
    import anndata

    folder = spaceranger_folder(path, bin_size)
    if bin_size is None and folder.name.startswith("square_") and folder.name[7:-2].isdigit():
        bin_size = int(folder.name[7:-2])  # a bin folder given directly
    matrix_path = folder / "filtered_feature_bc_matrix.h5"
    mat = read_feature_barcode_h5(matrix_path, fix=f"{_FIX} (it holds filtered_feature_bc_matrix.h5 and spatial/)")
    positions, positions_path = _read_positions(folder / "spatial")

    genes = (mat.features["feature_type"] == "Gene Expression").to_numpy()
    if not genes.any():
        raise S3RInputError(f"{matrix_path}: no 'Gene Expression' features; give the gene expression matrix of the run")
    barcodes = pd.Index(mat.barcodes)
    absent = ~barcodes.isin(positions.index)
    if absent.any():
        raise S3RInputError(
            f"{positions_path}: {int(absent.sum())} barcode(s) of {matrix_path.name} are not in the positions table "
            f"(e.g. {barcodes[absent][0]!r}); use the spatial/ folder of the same Space Ranger run"
        )
    pos = positions.loc[barcodes]
    in_tissue = pos["in_tissue"].to_numpy() == 1
    if not in_tissue.any():
        raise S3RInputError(
            f"{positions_path}: no spot of {matrix_path.name} is in tissue (in_tissue is 0 for all {len(barcodes)}); "
            f"rerun Space Ranger with a correct tissue alignment"
        )
    counts = mat.counts[np.flatnonzero(in_tissue)][:, np.flatnonzero(genes)]
    pos = pos.loc[in_tissue]
    feats = mat.features.loc[genes].reset_index(drop=True)
    var = pd.DataFrame(
        {"gene_ids": feats["id"].to_numpy(), "feature_types": feats["feature_type"].to_numpy(), "genome": feats["genome"].to_numpy()},
        index=pd.Index(unique_names(list(feats["name"])), dtype=object),
    )
    obs = pd.DataFrame(
        {c: pos[c].to_numpy(dtype=np.int64) for c in ("in_tissue", "array_row", "array_col")},
        index=pd.Index(pos.index.astype(str), dtype=object),
    )
    spatial = np.column_stack([pos["pxl_col_in_fullres"].to_numpy(np.float64), pos["pxl_row_in_fullres"].to_numpy(np.float64)])

    library_id = mat.library_ids[0] if mat.library_ids else folder.name
    entry: dict = {"metadata": {"source": str(folder), "reader": "s3r.readers.spaceranger"}}
    scalefactors_path = folder / "spatial" / "scalefactors_json.json"
    if scalefactors_path.is_file():
        try:
            entry["scalefactors"] = json.loads(scalefactors_path.read_text())
        except json.JSONDecodeError as err:
            raise S3RInputError(f"{scalefactors_path}: not valid JSON (line {err.lineno}); copy it again from the run") from None
    if images:
        entry["images"] = _read_images(folder / "spatial")
    adata = anndata.AnnData(X=counts, obs=obs, var=var, obsm={"spatial": spatial}, uns={"spatial": {library_id: entry}})
    adata.uns["s3r_input"] = {"format": "spaceranger", "path": str(folder), "matrix": str(matrix_path), "bin_size_um": bin_size,
                              "positions": positions_path.name, "n_barcodes": int(len(barcodes))}
    return adata
