"""Instrument output folders as AnnData, so every input reaches the same preparation code as an ``.h5ad``.

``read_spatial(kind, path)``: kind ``h5ad`` (a file), ``spaceranger`` (Space Ranger outs/, optionally a Visium HD
``bin_size`` in µm) or ``xenium`` (Xenium outs/). The readers are written on h5py/pandas rather than scanpy
(README, 'Reading instrument outputs'): they need a few dozen lines each, cover Visium HD bins and Xenium,
and keep scanpy's large dependency tree out of the runtime.
"""

from __future__ import annotations

from pathlib import Path

from s3r.errors import S3RInputError
from s3r.readers.spaceranger import read_spaceranger
from s3r.readers.xenium import read_xenium

__all__ = ["read_spaceranger", "read_xenium", "read_spatial", "input_source", "KINDS"]

KINDS = ("h5ad", "spaceranger", "xenium")


def read_spatial(kind: str, path: str | Path, *, bin_size: int | None = None, images: bool = True):
    """AnnData for one input of the given kind (raw values as stored; nothing normalised here)."""
    if kind == "spaceranger":
        return read_spaceranger(path, bin_size=bin_size, images=images)
    if bin_size is not None:
        raise S3RInputError(f"{path}: a bin size applies to Visium HD Space Ranger folders only; drop it")
    if kind == "xenium":
        return read_xenium(path)
    if kind == "h5ad":
        import anndata

        path = Path(path)
        if not path.is_file():
            raise S3RInputError(f"{path}: h5ad file not found; check the path")
        try:
            adata = anndata.read_h5ad(path)
        except Exception as err:  # h5py/anndata raise many types for a corrupt or foreign file
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise S3RInputError(f"{path}: cannot read as an AnnData .h5ad file ({msg}); check the file") from None
        adata.uns["s3r_input"] = {"matrix": str(path)}  # messages about its genes name this file (input_source)
        return adata
    raise ValueError(f"unknown input kind {kind!r}; expected one of {KINDS}")


def input_source(adata, fallback: str = "<AnnData>") -> str:
    """The file to name in error messages about an AnnData's genes: the instrument matrix when it came from one."""
    info = adata.uns.get("s3r_input", {}) if hasattr(adata, "uns") else {}
    return str(info.get("matrix", fallback))
