"""Checks on array inputs shared by the estimators: one clear message instead of a numpy traceback."""

from __future__ import annotations

import numpy as np

from s3r.errors import S3RInputError

# the smoothness penalties the solvers implement; named here, without torch, for the tuning jobs and the CLI
SMOOTH_MODES = ("tv", "graph_l1", "quadratic")


def finite_matrix(X, name: str, *, allow_vector: bool = False) -> np.ndarray:
    """X as a finite float64 (rows × columns) array; sparse input is densified, a vector becomes one column
    when ``allow_vector``. Non-numeric, wrongly shaped or non-finite input is an S3RInputError naming the cell."""
    try:
        arr = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise S3RInputError(f"{name} must be numeric: {err}") from None
    if allow_vector and arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise S3RInputError(f"{name} must be a 2-D array (rows × columns); got {arr.ndim}-D")
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise S3RInputError(f"{name} has a non-finite value at row {r}, column {c}; impute or drop that row")
    return arr


def finite_vector(values, n: int, name: str, x_name: str = "X") -> np.ndarray:
    """``values`` as a flat float64 array with one finite value per spot of the design ``x_name`` (``n`` spots).
    Non-numeric, wrongly sized or non-finite input is an S3RInputError naming the row."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise S3RInputError(f"{name} must be numeric: {err}") from None
    if arr.shape[0] != n:
        raise S3RInputError(f"{name} has {arr.shape[0]} values but {x_name} has {n} spots; they must describe the same spots")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise S3RInputError(f"{name} has a non-finite value at row {int(np.flatnonzero(bad)[0])}; impute or drop that spot")
    return arr
