"""The reference CSV layout (X.csv, Y.csv, coords.csv, covariates): one table reader that names the file, row and column of any problem."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError
from s3r.io.data import RegressionData
from s3r.io.messages import _examples, _suggest


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise S3RInputError(f"{path}: {what} file not found; check the path")
    if not path.is_file():
        raise S3RInputError(f"{path}: {what} path is not a file; give the path of the CSV file")
    if path.stat().st_size == 0:
        raise S3RInputError(f"{path}: {what} file is empty; write the {what} table into it")


def _read_header(path: Path, what: str) -> list[str]:
    # Read the header ourselves: pandas silently renames duplicated column names ("a" -> "a.1").
    with open(path, newline="", encoding="utf-8-sig") as fh:
        try:
            header = next(csv.reader(fh), None)
        except csv.Error as err:
            raise S3RInputError(f"{path}: cannot parse the header line of the {what} file ({err})") from None
    if not header or all(not h.strip() for h in header):
        raise S3RInputError(f"{path}: {what} file has an empty header line; its first line must name the columns")
    return header


def _read_table(path: str | os.PathLike, what: str, row_kind: str, col_kind: str) -> pd.DataFrame:
    """Read a CSV whose first column holds row ids and whose header names the columns, all values numeric."""
    path = Path(path)
    _check_file(path, what)
    header = _read_header(path, what)
    try:
        df = pd.read_csv(
            path,
            header=None,
            skiprows=1,
            index_col=0,
            dtype={0: str},
            float_precision="round_trip",  # exact float round trip of what we (and numpy/pandas) write
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise S3RInputError(f"{path}: {what} file has a header but no data rows; add one row per {row_kind}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        msg = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise S3RInputError(f"{path}: cannot parse the {what} file ({msg}); check it is comma-separated") from None
    if df.shape[0] == 0:
        raise S3RInputError(f"{path}: {what} file has a header but no data rows; add one row per {row_kind}")
    ncol = df.shape[1]
    if len(header) == ncol + 1:
        names = header[1:]
    elif len(header) == ncol:  # header without a field for the row-id column (R write.table style)
        names = header
    else:
        raise S3RInputError(
            f"{path}: header of the {what} file has {len(header)} fields but the data rows have {ncol + 1}; "
            f"make the header one id column plus one name per {col_kind}"
        )
    if ncol == 0:
        raise S3RInputError(f"{path}: {what} file has no data columns; add one column per {col_kind}")
    names = [n.strip() for n in names]
    df.columns = names

    index = df.index.to_series()
    missing_ids = np.flatnonzero(index.isna().to_numpy() | (index.astype(str).str.strip() == "").to_numpy())
    if missing_ids.size:
        raise S3RInputError(
            f"{path}: data row {missing_ids[0] + 1} of the {what} file has no {row_kind} id in the first column; "
            f"give every row an id"
        )
    df.index = pd.Index([str(s).strip() for s in df.index], dtype=object)

    blank = [i for i, n in enumerate(names) if n == ""]
    if blank:
        raise S3RInputError(
            f"{path}: column {blank[0] + 2} of the {what} file has no {col_kind} name in the header; name every column"
        )
    for ids, kind, where in ((df.columns, col_kind, "header"), (df.index, row_kind, "first column")):
        dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique()
        if len(dup):
            raise S3RInputError(
                f"{path}: {len(dup)} duplicated {kind} id(s) in the {where} of the {what} file "
                f"({_examples(list(dup))}); make the ids unique"
            )

    _check_numeric(df, path, what, row_kind, col_kind)
    return df


def _check_numeric(df: pd.DataFrame, path: Path, what: str, row_kind: str, col_kind: str) -> None:
    for j, col in enumerate(df.columns):
        s = df.iloc[:, j]
        if s.dtype.kind not in "fiu":
            coerced = pd.to_numeric(s, errors="coerce")
            bad = np.flatnonzero(coerced.isna().to_numpy() & s.notna().to_numpy())
            if bad.size:
                i = bad[0]
                raise S3RInputError(
                    f"{path}: non-numeric value {str(s.iloc[i])!r} in the {what} file at row {df.index[i]!r} "
                    f"({row_kind}), column {col!r} ({col_kind}); replace it with a number"
                )
            df[col] = coerced.astype(np.float64)
    values = df.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        kind = "missing/NaN" if np.isnan(values[i, j]) else "infinite"
        raise S3RInputError(
            f"{path}: {kind} value in the {what} file at row {df.index[i]!r} ({row_kind}), column "
            f"{df.columns[j]!r} ({col_kind}); fill it in or drop that {row_kind}"
        )


def _match_spots(ref_ids: pd.Index, ref_path: Path, other: pd.DataFrame, other_path: Path) -> None:
    ref = set(ref_ids)
    own = set(other.index)
    if ref == own:
        return
    parts = []
    lacking = [s for s in ref_ids if s not in own]
    extra = [s for s in other.index if s not in ref]
    if lacking:
        parts.append(f"{other_path} lacks {len(lacking)} spot(s) present in {ref_path} ({_examples(lacking)})")
    if extra:
        parts.append(f"{ref_path} lacks {len(extra)} spot(s) present in {other_path} ({_examples(extra)})")
    raise S3RInputError("; ".join(parts) + "; use the same spot ids in every file")


def read_reference_csv(
    x_path: str | os.PathLike,
    y_path: str | os.PathLike,
    coords_path: str | os.PathLike,
    *,
    target: str | None = None,
) -> RegressionData:
    """Read the S3R reference CSV layout as it is, so earlier inputs work unchanged.

    ``x_path``: features × spots with a header of spot ids; ``y_path``: spots × targets; ``coords_path``:
    spots × (``row``, ``col``) or (``x``, ``y``). Spots follow the order of X's columns.
    """
    x_path, y_path, coords_path = Path(x_path), Path(y_path), Path(coords_path)
    xdf = _read_table(x_path, "X (features x spots)", "feature", "spot")
    ydf = _read_table(y_path, "Y (spots x targets)", "spot", "target")
    cdf = _read_table(coords_path, "coordinates (spots x row,col)", "spot", "coordinate")

    if target is None:
        if ydf.shape[1] != 1:
            raise S3RInputError(
                f"{y_path}: Y file has {ydf.shape[1]} columns ({_examples(list(ydf.columns))}); "
                f"choose one (--target-column on the command line, target= in Python)"
            )
        target = str(ydf.columns[0])
    elif target not in ydf.columns:
        raise S3RInputError(
            f"{y_path}: target {target!r} is not a column of the Y file{_suggest(target, list(ydf.columns))}; "
            f"columns are {_examples(list(ydf.columns), 10)}"
        )

    lower = {str(c).lower(): c for c in cdf.columns}
    for pair in (("row", "col"), ("x", "y")):
        if all(p in lower for p in pair):
            coord_cols = [lower[p] for p in pair]
            break
    else:
        raise S3RInputError(
            f"{coords_path}: coordinates file needs columns 'row','col' (or 'x','y'); found "
            f"{_examples(list(cdf.columns), 10)}; rename the header"
        )

    spots = xdf.columns
    _match_spots(spots, x_path, ydf, y_path)
    _match_spots(spots, x_path, cdf, coords_path)
    return RegressionData(
        X=xdf.to_numpy(dtype=np.float64).T.copy(),
        y=ydf.loc[spots, target].to_numpy(dtype=np.float64),
        coords=cdf.loc[spots, coord_cols].to_numpy(dtype=np.float64),
        spot_ids=list(spots),
        feature_names=list(xdf.index),
        target_name=str(target),
    )
