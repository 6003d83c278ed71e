"""Reading one regression problem from an AnnData file: target, features, coordinates and covariates."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3r.errors import S3RInputError
from s3r.io.data import RegressionData
from s3r.io.messages import _examples, _suggest


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
    adata, path = _open_anndata(path, source)
    var_names, obs_names = _unique_names(adata, path)
    matrix, source = _expression_matrix(adata, layer, path)
    y = _read_target(adata, matrix, source, var_names, target, path)
    _nonfinite_check(y[:, None], [f"target {target}"], obs_names, path, "target")
    X, feature_names, source = _read_features(adata, matrix, source, var_names, features, target, path)
    _nonfinite_check(X, feature_names, obs_names, path, f"feature ({source})")
    coords = _read_coords(adata, spatial_key, path)
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


def _open_anndata(path, source: str | None):
    """The AnnData object and the path its messages name: read from disk, or as given when already in memory."""
    import anndata

    if isinstance(path, anndata.AnnData):  # already read (e.g. from a Space Ranger or Xenium folder)
        from s3r.readers import input_source

        return path, Path(source or input_source(path))
    path = Path(path)
    if not path.exists():
        raise S3RInputError(f"{path}: h5ad file not found; check the path")
    if not path.is_file():
        raise S3RInputError(f"{path}: path is not a file; give the path of the .h5ad file")
    if path.stat().st_size == 0:
        raise S3RInputError(f"{path}: h5ad file is empty; rewrite it with AnnData.write_h5ad")
    try:
        return anndata.read_h5ad(path), path
    except Exception as err:  # h5py/anndata raise many types for a corrupt or foreign file
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise S3RInputError(f"{path}: cannot read as an AnnData .h5ad file ({msg}); check the file") from None


def _unique_names(adata, path: Path) -> tuple[pd.Index, list[str]]:
    """Gene and spot names as strings; a duplicate in either would make a selection ambiguous."""
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
    return var_names, obs_names


def _expression_matrix(adata, layer: str | None, path: Path) -> tuple[Any, str]:
    """.X or the named layer, with the words messages use for it."""
    if layer is None:
        return adata.X, ".X"
    if layer not in adata.layers:
        raise S3RInputError(
            f"{path}: layer {layer!r} not found{_suggest(layer, list(adata.layers.keys()))}; "
            f"layers are {_examples(list(adata.layers.keys()), 10) or 'none'}"
        )
    return adata.layers[layer], f".layers[{layer!r}]"


def _read_target(adata, matrix, source: str, var_names: pd.Index, target: str, path: Path) -> np.ndarray:
    """The response: a gene's expression, or failing that a numeric .obs column."""
    if target in var_names:
        if matrix is None:
            raise S3RInputError(f"{path}: the file has no expression matrix in {source}; write one or pick a layer")
        return _dense_columns(matrix, var_names.get_indexer([target]))[:, 0]
    if target in adata.obs.columns and adata.obs[target].dtype.kind in "fiub":
        return adata.obs[target].to_numpy(dtype=np.float64)
    raise S3RInputError(
        f"{path}: target gene {target!r} not in var_names{_suggest(target, var_names)}; check the gene name"
    )


def _read_features(adata, matrix, source: str, var_names: pd.Index, features, target: str, path: Path) -> tuple[np.ndarray, list[str], str]:
    """(X, feature names, where they came from): the columns of an .obsm key, or the listed genes."""
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
        return X, feature_names, f".obsm[{features!r}]"
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
    return _dense_columns(matrix, _gene_indices(feature_names, var_names, path, "feature")), feature_names, source


def _read_coords(adata, spatial_key: str, path: Path) -> np.ndarray:
    """The first two columns of .obsm[spatial_key] as float64."""
    if spatial_key not in adata.obsm:
        raise S3RInputError(
            f"{path}: coordinates .obsm[{spatial_key!r}] not found{_suggest(spatial_key, list(adata.obsm.keys()))}; "
            f".obsm keys are {_examples(list(adata.obsm.keys()), 10) or 'none'} (name the key: --spatial-key on the command line, spatial_key= in Python, the sheet's spatial_key column)"
        )
    coords = adata.obsm[spatial_key]
    coords = coords.to_numpy() if isinstance(coords, pd.DataFrame) else np.asarray(coords)
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2:
        raise S3RInputError(
            f"{path}: .obsm[{spatial_key!r}] has shape {coords.shape}; it needs two coordinate columns"
        )
    return coords[:, :2].copy()
