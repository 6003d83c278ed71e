"""Checking spot coordinates and graph settings, with messages that name the offending rows."""

from __future__ import annotations

from numbers import Integral

import numpy as np

from s3r.errors import S3RInputError

_MAX_ROWS_NAMED = 5


def _row_names(rows, labels) -> list[str]:
    """Rows are 0-based; a DataFrame's index label is added because that is what users recognise."""
    names = []
    for row in rows:
        name = f"row {int(row)}"
        if labels is not None:
            name += f" (index label {labels[int(row)]!r})"
        names.append(name)
    return names


def _list_rows(rows, labels) -> str:
    rows = list(rows)
    named = _row_names(rows[:_MAX_ROWS_NAMED], labels)
    text = ", ".join(named)
    if len(rows) > _MAX_ROWS_NAMED:
        text += f" and {len(rows) - _MAX_ROWS_NAMED} more"
    return text


def _first_duplicate_pair(xy: np.ndarray) -> tuple[int, int, int] | None:
    """(earlier row, later row, number of redundant rows) for the duplicate whose later row comes first."""
    order = np.lexsort((np.arange(len(xy)), xy[:, 1], xy[:, 0]))
    sorted_xy = xy[order]
    same_as_previous = np.all(sorted_xy[1:] == sorted_xy[:-1], axis=1)
    if not same_as_previous.any():
        return None
    # Within a run of equal coordinates the order is by row, so the run's first row is the one to keep.
    run_start = np.zeros(len(xy), dtype=bool)
    run_start[0] = True
    run_start[1:] = ~same_as_previous
    first_of_run = order[np.maximum.accumulate(np.where(run_start, np.arange(len(xy)), 0))]
    redundant = np.flatnonzero(~run_start)
    later_rows = order[redundant]
    pick = np.argmin(later_rows)
    return int(first_of_run[redundant[pick]]), int(later_rows[pick]), int(len(redundant))


def validate_coords(coords, *, source: str = "coordinates", min_spots: int = 1) -> np.ndarray:
    """Return coordinates as a fresh (n, 2) float64 array, or raise one actionable S3RInputError line.

    Graph builders fail in obscure ways on NaN (KD-tree), duplicates (zero-length edges, Qhull drops points)
    or too few spots, so every such problem is caught here and reported by row.
    """
    labels = None
    if hasattr(coords, "columns") and hasattr(coords, "index"):  # a pandas DataFrame
        columns = list(coords.columns)
        if len(columns) != 2:
            raise S3RInputError(
                f"{source}: expected 2 coordinate columns (x, y) but got {len(columns)}"
                f" ({', '.join(map(str, columns))}); select the two spatial columns"
            )
        from pandas.api.types import is_bool_dtype, is_numeric_dtype  # here: a fold job reading arrays never needs pandas

        for position, dtype in enumerate(coords.dtypes):
            if not is_numeric_dtype(dtype) or is_bool_dtype(dtype):
                raise S3RInputError(
                    f"{source}: column {columns[position]!r} has dtype {dtype}, not numbers;"
                    " convert the coordinate columns to numeric"
                )
        labels = list(coords.index)
        values = coords.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    else:
        try:
            values = np.array(coords, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as exc:
            raise S3RInputError(
                f"{source}: coordinates must be numeric, an (n, 2) array of x, y ({exc})"
            ) from None
    if values.ndim != 2 or values.shape[1] != 2:
        raise S3RInputError(
            f"{source}: expected an (n, 2) array of x, y coordinates but got shape {values.shape};"
            " pass one row per spot with two columns"
        )
    n = values.shape[0]
    if n < max(int(min_spots), 1):
        raise S3RInputError(
            f"{source}: {n} spots but at least {max(int(min_spots), 1)} are needed; add spots or lower k"
        )
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad_rows.size:
        verb = "has a" if bad_rows.size == 1 else "have"
        noun = "coordinate" if bad_rows.size == 1 else "coordinates"
        raise S3RInputError(
            f"{source}: {_list_rows(bad_rows, labels)} {verb} non-finite (NaN or inf) {noun};"
            " drop those spots or fix their coordinates"
        )
    duplicate = _first_duplicate_pair(values)
    if duplicate is not None:
        kept, repeated, count = duplicate
        first, second = _row_names([kept, repeated], labels)
        more = f" ({count} duplicated rows in all)" if count > 1 else ""
        x, y = values[repeated]
        raise S3RInputError(
            f"{source}: {first} and {second} have identical coordinates ({x:g}, {y:g}){more};"
            " merge the duplicated spots or jitter them apart"
        )
    values[values == 0] = 0.0  # -0.0 and 0.0 are one location; keep downstream arithmetic identical
    return values


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise S3RInputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_positive_length(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise S3RInputError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise S3RInputError(f"{name} must be a positive finite number, got {value!r}")
    return number
