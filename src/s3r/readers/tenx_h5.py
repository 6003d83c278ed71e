"""The 10x Genomics feature-barcode matrix HDF5 file (Cell Ranger ≥ 3 layout), read with h5py.

Space Ranger's ``filtered_feature_bc_matrix.h5`` and Xenium's ``cell_feature_matrix.h5`` share this layout:
group ``matrix`` with the CSC arrays ``data``/``indices``/``indptr``/``shape`` (features × barcodes),
``barcodes``, and ``features/{id,name,feature_type,genome}``. Stored column-compressed over barcodes, it is
exactly a CSR matrix of barcodes × features, so no copy or transpose is needed to get spots as rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3r.errors import S3RInputError


@dataclass
class FeatureBarcodeMatrix:
    """Barcodes × features counts and the feature table (id, name, feature_type, genome)."""

    counts: sp.csr_matrix
    barcodes: np.ndarray
    features: pd.DataFrame
    library_ids: list[str]


def _strings(dataset) -> np.ndarray:
    values = dataset[()]
    if values.dtype.kind == "S":
        return values.astype("U")  # fixed-length ASCII bytes: one vectorised decode
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object).astype("U")


def read_feature_barcode_h5(path: str | Path, *, fix: str) -> FeatureBarcodeMatrix:
    """Read one 10x HDF5 matrix; ``fix`` completes the error line for a missing file (which folder to give)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise S3RInputError(f"{path}: feature-barcode matrix not found; {fix}")
    if not h5py.is_hdf5(path):
        raise S3RInputError(f"{path}: not an HDF5 file; give the .h5 matrix written by 10x software (not the MEX folder)")
    with h5py.File(path, "r") as f:
        if "matrix" not in f:
            raise S3RInputError(
                f"{path}: no 'matrix' group (groups: {', '.join(f.keys()) or 'none'}); this reader needs the "
                f"Cell Ranger ≥ 3 / Space Ranger / Xenium HDF5 layout"
            )
        m = f["matrix"]
        missing = [k for k in ("data", "indices", "indptr", "shape", "barcodes", "features") if k not in m]
        if missing:
            raise S3RInputError(f"{path}: 'matrix' lacks {', '.join(missing)}; the file is truncated or not a 10x matrix")
        n_features, n_barcodes = (int(v) for v in m["shape"][()])
        indptr = m["indptr"][()]
        if indptr.shape[0] != n_barcodes + 1:
            raise S3RInputError(f"{path}: indptr has {indptr.shape[0]} entries for {n_barcodes} barcodes; the file is damaged")
        counts = sp.csr_matrix(
            (m["data"][()].astype(np.float32, copy=False), m["indices"][()], indptr), shape=(n_barcodes, n_features)
        )
        barcodes = _strings(m["barcodes"])
        feats = m["features"]
        table = {"id": _strings(feats["id"]), "name": _strings(feats["name"])}
        for key in ("feature_type", "genome"):
            table[key] = _strings(feats[key]) if key in feats else np.full(n_features, "", dtype="U1")
        libraries = f.attrs.get("library_ids", [])
        library_ids = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(libraries)]
    if len(barcodes) != n_barcodes or any(len(v) != n_features for v in table.values()):
        raise S3RInputError(f"{path}: barcode or feature lists do not match the matrix shape; the file is damaged")
    return FeatureBarcodeMatrix(counts, barcodes, pd.DataFrame(table), library_ids)


def unique_names(names) -> list[str]:
    """Gene symbols are not unique in 10x references; later repeats become NAME-1, NAME-2 (ids stay in .var)."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        k = seen[name]
        while True:
            k += 1
            candidate = f"{name}-{k}"
            if candidate not in taken:
                break
        seen[name] = k
        taken.add(candidate)
        out.append(candidate)
    return out
