"""Reading user data and writing results.

Readers turn every problem with an input file into a one-line :class:`~s3r.errors.S3RInputError` that names
the file, the row and column (or spot, gene) and the fix, because these files come from other pipelines and
users must be able to repair them without reading a traceback. Writers are atomic (temporary file in the same
directory, fsync, ``os.replace``) so an interrupted workflow job never leaves a truncated output that looks
complete to Snakemake.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3r.errors import S3RInputError

__all__ = [
    "RegressionData",
    "read_reference_csv",
    "read_h5ad",
    "atomic_write",
    "atomic_path",
    "write_json",
    "write_csv",
    "write_npz",
]


@dataclass
class RegressionData:
    """One regression problem, spots in a fixed order shared by every array."""

    X: np.ndarray
    y: np.ndarray
    coords: np.ndarray
    spot_ids: list[str]
    feature_names: list[str]
    target_name: str
    covariates: np.ndarray | None = None
    covariate_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Inconsistent shapes here are a programming error, not a user one.
        self.X = np.asarray(self.X, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.float64).reshape(-1)
        self.coords = np.asarray(self.coords, dtype=np.float64)
        self.spot_ids = [str(s) for s in self.spot_ids]
        self.feature_names = [str(f) for f in self.feature_names]
        n = self.X.shape[0]
        if self.X.ndim != 2 or self.y.shape != (n,) or self.coords.shape != (n, 2) or len(self.spot_ids) != n:
            raise ValueError(
                f"inconsistent shapes: X {self.X.shape}, y {self.y.shape}, coords {self.coords.shape}, "
                f"{len(self.spot_ids)} spot ids"
            )
        if len(self.feature_names) != self.X.shape[1]:
            raise ValueError(f"{len(self.feature_names)} feature names for {self.X.shape[1]} columns of X")
        if self.covariates is not None:
            self.covariates = np.asarray(self.covariates, dtype=np.float64)
            if self.covariates.ndim == 1:
                self.covariates = self.covariates[:, None]
            if self.covariates.shape[0] != n or self.covariates.shape[1] != len(self.covariate_names):
                raise ValueError(
                    f"covariates {self.covariates.shape} do not match {n} spots and "
                    f"{len(self.covariate_names)} covariate names"
                )

    @property
    def n_spots(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]


# ---------------------------------------------------------------------------------------------------------
# Reference CSV layout
# ---------------------------------------------------------------------------------------------------------


def _examples(items: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(repr(str(s)) for s in list(items)[:k])
    return f"{shown}, ..." if len(items) > k else shown


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {_examples(close)}?)" if close else ""


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
                f"choose one with target=..."
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


# ---------------------------------------------------------------------------------------------------------
# AnnData
# ---------------------------------------------------------------------------------------------------------


def _dense_columns(matrix: Any, idx: np.ndarray) -> np.ndarray:
    sub = matrix[:, idx]
    if sp.issparse(sub):
        sub = sub.toarray()
    return np.asarray(sub, dtype=np.float64).reshape(matrix.shape[0], len(idx))


def _nonfinite_check(values: np.ndarray, names: Sequence[str], obs_names: Sequence[str], path: Path, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise S3RInputError(
            f"{path}: NaN/infinite {what} value for spot {obs_names[i]!r}, {names[j]!r}; "
            f"fill it in or drop that spot"
        )


def _gene_indices(names: Sequence[str], var_names: pd.Index, path: Path, role: str) -> np.ndarray:
    missing = [g for g in names if g not in var_names]
    if missing:
        hints = "".join(_suggest(g, var_names) for g in missing[:3])
        raise S3RInputError(
            f"{path}: {len(missing)} {role} gene(s) not in var_names: {_examples(missing)}{hints}; "
            f"check the gene names (var_names are e.g. {_examples(list(var_names[:3]))})"
        )
    return var_names.get_indexer(list(names))


def _covariate_matrix(obs: pd.DataFrame, columns: Sequence[str], path: Path) -> tuple[np.ndarray | None, list[str]]:
    if not columns:
        return None, []
    missing = [c for c in columns if c not in obs.columns]
    if missing:
        hints = "".join(_suggest(c, list(obs.columns)) for c in missing[:3])
        raise S3RInputError(
            f"{path}: covariate column(s) {_examples(missing)} not in .obs{hints}; "
            f".obs has {_examples(list(obs.columns), 10)}"
        )
    blocks, names = [], []
    for col in columns:
        s = obs[col]
        if s.isna().any():
            spot = obs.index[np.flatnonzero(s.isna().to_numpy())[0]]
            raise S3RInputError(f"{path}: covariate .obs[{col!r}] is missing for spot {spot!r}; fill it in or drop the spot")
        if s.dtype.kind in "fiu":
            v = s.to_numpy(dtype=np.float64)
            if not np.isfinite(v).all():
                spot = obs.index[np.flatnonzero(~np.isfinite(v))[0]]
                raise S3RInputError(f"{path}: covariate .obs[{col!r}] is infinite for spot {spot!r}; fix the value")
            blocks.append(v[:, None])
            names.append(str(col))
        else:
            # Categorical: one-hot with the first level dropped, so an intercept stays identifiable.
            cat = s.astype("category")
            levels = list(cat.cat.categories)
            codes = cat.cat.codes.to_numpy()
            for k, level in enumerate(levels[1:], start=1):
                blocks.append((codes == k).astype(np.float64)[:, None])
                names.append(f"{col}={level}")
    if not blocks:
        return np.zeros((len(obs), 0)), []
    return np.hstack(blocks), names


def read_h5ad(
    path: str | os.PathLike,
    *,
    target: str,
    features: Sequence[str] | str,
    layer: str | None = None,
    spatial_key: str = "spatial",
    covariates: Sequence[str] = (),
    source: str | None = None,
) -> RegressionData:
    """Read one regression problem from an AnnData file (or an AnnData object already in memory).

    ``target``: a gene (or, failing that, a numeric ``.obs`` column). ``features``: a list of genes, or a
    string naming an ``.obsm`` key (e.g. cell-type proportions) whose columns become the features — named by
    the DataFrame's columns, else ``<key>_1..``. Only the selected genes are densified, so sparse atlases
    with tens of thousands of genes stay cheap.
    """
    import anndata

    if isinstance(path, anndata.AnnData):  # already read (e.g. from a Space Ranger or Xenium folder)
        from s3r.readers import input_source

        adata, path = path, Path(source or input_source(path))
    else:
        path = Path(path)
        if not path.exists():
            raise S3RInputError(f"{path}: h5ad file not found; check the path")
        if not path.is_file():
            raise S3RInputError(f"{path}: path is not a file; give the path of the .h5ad file")
        if path.stat().st_size == 0:
            raise S3RInputError(f"{path}: h5ad file is empty; rewrite it with AnnData.write_h5ad")
        try:
            adata = anndata.read_h5ad(path)
        except Exception as err:  # h5py/anndata raise many types for a corrupt or foreign file
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise S3RInputError(f"{path}: cannot read as an AnnData .h5ad file ({msg}); check the file") from None

    var_names = pd.Index([str(v) for v in adata.var_names])
    obs_names = [str(o) for o in adata.obs_names]
    if var_names.has_duplicates:
        dup = var_names[var_names.duplicated()].unique()
        raise S3RInputError(
            f"{path}: {len(dup)} duplicated gene name(s) in var_names ({_examples(list(dup))}); "
            f"run adata.var_names_make_unique()"
        )
    if len(set(obs_names)) != len(obs_names):
        dup = pd.Index(obs_names)[pd.Index(obs_names).duplicated()].unique()
        raise S3RInputError(
            f"{path}: {len(dup)} duplicated spot id(s) in obs_names ({_examples(list(dup))}); "
            f"run adata.obs_names_make_unique()"
        )

    if layer is None:
        matrix = adata.X
        source = ".X"
    else:
        if layer not in adata.layers:
            raise S3RInputError(
                f"{path}: layer {layer!r} not found{_suggest(layer, list(adata.layers.keys()))}; "
                f"layers are {_examples(list(adata.layers.keys()), 10) or 'none'}"
            )
        matrix = adata.layers[layer]
        source = f".layers[{layer!r}]"

    # Target
    if target in var_names:
        if matrix is None:
            raise S3RInputError(f"{path}: the file has no expression matrix in {source}; write one or pick a layer")
        y = _dense_columns(matrix, var_names.get_indexer([target]))[:, 0]
    elif target in adata.obs.columns and adata.obs[target].dtype.kind in "fiub":
        y = adata.obs[target].to_numpy(dtype=np.float64)
    else:
        raise S3RInputError(
            f"{path}: target gene {target!r} not in var_names{_suggest(target, var_names)}; check the gene name"
        )
    _nonfinite_check(y[:, None], [f"target {target}"], obs_names, path, "target")

    # Features
    if isinstance(features, str) and features in adata.obsm:
        obsm = adata.obsm[features]
        if isinstance(obsm, pd.DataFrame):
            feature_names = [str(c) for c in obsm.columns]
            X = obsm.to_numpy(dtype=np.float64)
        else:
            X = obsm.toarray() if sp.issparse(obsm) else np.asarray(obsm)
            X = np.asarray(X, dtype=np.float64)
            if X.ndim == 1:
                X = X[:, None]
            feature_names = [f"{features}_{i + 1}" for i in range(X.shape[1])]
        if X.shape[1] == 0:
            raise S3RInputError(f"{path}: .obsm[{features!r}] has no columns; store the features there")
        source = f".obsm[{features!r}]"
    else:
        if isinstance(features, str):
            if features not in var_names:
                raise S3RInputError(
                    f"{path}: features {features!r} is neither an .obsm key nor a gene"
                    f"{_suggest(features, list(adata.obsm.keys()) + list(var_names))}; .obsm keys are "
                    f"{_examples(list(adata.obsm.keys()), 10) or 'none'}"
                )
            features = [features]
        feature_names = [str(f) for f in features]
        if not feature_names:
            raise S3RInputError(f"{path}: no features given; list the genes to use as features")
        dup = pd.Index(feature_names)[pd.Index(feature_names).duplicated()].unique()
        if len(dup):
            raise S3RInputError(f"{path}: feature gene(s) listed twice: {_examples(list(dup))}; list each once")
        if target in feature_names:
            raise S3RInputError(f"{path}: target {target!r} is also listed as a feature; remove it from the features")
        if matrix is None:
            raise S3RInputError(f"{path}: the file has no expression matrix in {source}; write one or pick a layer")
        X = _dense_columns(matrix, _gene_indices(feature_names, var_names, path, "feature"))
    _nonfinite_check(X, feature_names, obs_names, path, f"feature ({source})")

    # Coordinates
    if spatial_key not in adata.obsm:
        raise S3RInputError(
            f"{path}: coordinates .obsm[{spatial_key!r}] not found{_suggest(spatial_key, list(adata.obsm.keys()))}; "
            f".obsm keys are {_examples(list(adata.obsm.keys()), 10) or 'none'} (set spatial_key)"
        )
    coords = adata.obsm[spatial_key]
    coords = coords.to_numpy() if isinstance(coords, pd.DataFrame) else np.asarray(coords)
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise S3RInputError(
            f"{path}: .obsm[{spatial_key!r}] has shape {coords.shape}; it needs two coordinate columns"
        )
    coords = coords[:, :2].copy()
    _nonfinite_check(coords, ["coordinate 1", "coordinate 2"], obs_names, path, f".obsm[{spatial_key!r}]")

    cov, cov_names = _covariate_matrix(adata.obs, list(covariates), path)
    return RegressionData(
        X=X,
        y=y,
        coords=coords,
        spot_ids=obs_names,
        feature_names=feature_names,
        target_name=str(target),
        covariates=cov,
        covariate_names=cov_names,
    )


# ---------------------------------------------------------------------------------------------------------
# Atomic writers
# ---------------------------------------------------------------------------------------------------------


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for writers that need a file name (h5py, savefig).

    The file is moved onto ``path`` only when the block succeeds; otherwise it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: some writers choose the format from it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs should look like ordinary files
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", *, encoding: str = "utf-8", newline: str | None = None
) -> Iterator[Any]:
    """Open ``path`` for writing so that readers see either the old file or the complete new one."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write mode must be 'w', 'wt' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        if "b" in mode:
            fh = open(tmp, "wb")
        else:
            fh = open(tmp, "w", encoding=encoding, newline=newline)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(_jsonable(k))): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/inf; other tools (jq, JS) reject them
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically; numpy values become plain JSON, NaN/inf become null, key order is kept."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False)
    with atomic_write(path, "w") as fh:
        fh.write(text + "\n")


def read_json_object(path: str | os.PathLike, missing: str, expected: str) -> dict:
    """A JSON object from a file, or one line naming the file: ``missing`` says what to pass instead when it
    does not exist, ``expected`` what the object should hold."""
    path = Path(path)
    if not path.is_file():
        raise S3RInputError(f"{path}: {missing}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise S3RInputError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from None
    if not isinstance(raw, dict):
        raise S3RInputError(f"{path}: expected a JSON object {expected}")
    return raw


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **to_csv_kwargs: Any) -> None:
    """Write a DataFrame as CSV atomically (floats in shortest round-trip form unless told otherwise)."""
    with atomic_write(path, "w", newline="") as fh:
        df.to_csv(fh, **to_csv_kwargs)


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write arrays with ``np.savez_compressed`` atomically."""
    with atomic_write(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
