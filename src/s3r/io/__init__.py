"""Reading user data and writing results.

Readers turn every problem with an input file into a one-line :class:`~s3r.errors.S3RInputError` that names
the file, the row and column (or spot, gene) and the fix, because these files come from other pipelines and
users must be able to repair them without reading a traceback. Writers are atomic (temporary file in the same
directory, fsync, ``os.replace``) so an interrupted workflow job never leaves a truncated output that looks
complete to Snakemake.

The package: ``data`` (:class:`RegressionData`), ``reference_csv`` (the X/Y/coords CSV layout), ``h5ad``
(AnnData), ``atomic`` (atomic writers, the JSON object reader), ``messages`` (pieces of the one-line errors).
Every name is importable from ``s3r.io``.
"""

from __future__ import annotations

from s3r.lazy import lazy_exports

# the readers load on first use: they bring pandas (0.2 s), which a solve job writing JSON and arrays never needs
_WHERE = {
    "atomic": ("atomic_path", "atomic_write", "read_json_object", "write_csv", "write_json", "write_npz"),
    "data": ("RegressionData",),
    "h5ad": ("read_h5ad",),
    "reference_csv": ("_read_table", "read_reference_csv"),  # _read_table: s3r deconvolve's table reader
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
