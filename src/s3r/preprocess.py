"""One sample's input made analysis-ready: read, normalise counts, select and standardise features.

The workflow's preprocess step runs this once per sample, so every target of the sample is fitted on the
same design matrix, and the fits read one small binary file instead of re-parsing CSVs or an atlas-sized
``.h5ad``. Counts are library-size normalised and log1p-transformed because S3R's squared-error data fit
assumes roughly homoscedastic responses; inputs that already hold continuous values are left alone.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import scipy.sparse as sp

from s3r.feature_choice import feature_genes, left_out_controls, select_columns
from s3r.errors import S3RInputError
from s3r.io import RegressionData, write_npz

if TYPE_CHECKING:  # the readers (and pandas) load where a sample is prepared: reading a prepared one needs neither
    import pandas as pd

__all__ = [
    "PreparedSample",
    "holds_counts",
    "prepare_h5ad",
    "prepare_reference_csv",
    "write_prepared",
    "read_prepared",
]

NORMALIZE_CHOICES = ("auto", True, False)
LIBRARY_SIZE = "log_library_size"  # offset name: log of each spot's total counts


def _auto_offset(spec, normalised_counts: bool):
    """Offset 'auto' (the counts policy, s3r.counts): log library size exactly when raw counts were detected and
    normalisation is on; any other spec is kept as given."""
    if spec == "auto":
        return LIBRARY_SIZE if normalised_counts else None
    return spec


def _offset(spec, totals, obs, source: str):
    """The offset array for ``spec``: None, 'log_library_size' (log of the spots' total counts) or an .obs column."""
    if spec is None:
        return None
    if spec == LIBRARY_SIZE:
        if totals is None:
            raise S3RInputError(f"{source}: offset {LIBRARY_SIZE!r} needs counts to sum; the input holds no counts matrix")
        if np.any(totals <= 0):
            raise S3RInputError(f"{source}: {int(np.sum(totals <= 0))} spot(s) have no counts, so log library size is undefined; drop them")
        return np.log(totals)
    if obs is None or spec not in obs.columns:
        raise S3RInputError(f"{source}: offset column {spec!r} is not in .obs; name an .obs column or use {LIBRARY_SIZE!r}")
    values = np.asarray(obs[spec], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise S3RInputError(f"{source}: offset column {spec!r} has missing or infinite values; fill them")
    return values


@dataclass
class PreparedSample:
    """Design matrix shared by all targets of a sample; ``Y[:, j]`` is target ``target_names[j]``."""

    X: np.ndarray
    Y: np.ndarray
    coords: np.ndarray
    spot_ids: list[str]
    feature_names: list[str]
    target_names: list[str]
    covariates: np.ndarray | None = None
    covariate_names: list[str] = field(default_factory=list)
    # Feature centre/scale, to map standardised coefficients back to input units (coef / scale).
    feature_mean: np.ndarray | None = None
    feature_scale: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # log-link families: per-spot offset (log library size, or an .obs column), shared by every target
    offset: np.ndarray | None = None

    def regression_data(self, target: str) -> RegressionData:
        if target not in self.target_names:
            raise S3RInputError(
                f"target {target!r} was not preprocessed for this sample; preprocessed targets are "
                f"{', '.join(self.target_names)}"
            )
        j = self.target_names.index(target)
        return RegressionData(
            X=self.X,
            y=self.Y[:, j],
            coords=self.coords,
            spot_ids=self.spot_ids,
            feature_names=self.feature_names,
            target_name=target,
            covariates=self.covariates,
            covariate_names=list(self.covariate_names),
        )


def holds_counts(values) -> bool:
    """Non-negative integers everywhere (checked on stored entries only for sparse input)."""
    data = values.data if sp.issparse(values) else np.asarray(values)
    if data.size == 0:
        return False
    data = np.asarray(data, dtype=np.float64)
    return bool(np.isfinite(data).all() and (data >= 0).all() and np.array_equal(data, np.round(data)))


def _check_normalize(normalize) -> None:
    if normalize not in NORMALIZE_CHOICES:
        raise S3RInputError(f"normalize must be 'auto', true or false, not {normalize!r}")


def _should_normalize(normalize, counts: bool, nonnegative: bool, source: str) -> bool:
    _check_normalize(normalize)
    if normalize is True and not nonnegative:
        raise S3RInputError(
            f"{source}: normalize is true but the values include negatives, so they are not counts; "
            f"set preprocess.normalize to auto or false"
        )
    return counts if normalize == "auto" else bool(normalize)


def _log_normalize(values: np.ndarray, totals: np.ndarray, target_sum: float) -> np.ndarray:
    """log1p(counts / total · target_sum); spots without any counts stay at 0."""
    factor = np.divide(target_sum, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    return np.log1p(values * factor[:, None])


def _standardize(X: np.ndarray, names: list[str], standardize: bool, source: str, log=sys.stderr):
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    constant = scale <= 1e-12 * np.maximum(1.0, np.abs(mean))
    dropped = [n for n, c in zip(names, constant) if c]
    if dropped:
        print(
            f"{source}: dropping {len(dropped)} constant feature(s) (e.g. {dropped[0]!r}): they carry no signal",
            file=log,
        )
    if constant.all():
        raise S3RInputError(f"{source}: every selected feature is constant across spots; choose other features")
    keep = ~constant
    X, mean, scale = X[:, keep], mean[keep], scale[keep]
    names = [n for n, k in zip(names, keep) if k]
    # Scaled, never centred: a feature's zero (no expression, no cells of a type) stays zero, the reference point
    # of an effect; centred features turn the target's spatial mean shifts that their expression carries into
    # something no coefficient map can represent (measured: held-out loss above the intercept-only model on the
    # realistic simulations, where the uncentred features explain 60 % of it). feature_mean stays in the record
    # as what is subtracted: zero.
    mean = np.zeros_like(mean)
    if standardize:
        X = X / scale
    else:
        scale = np.ones_like(scale)
    return X, names, mean, scale, dropped


def _check_targets_listed(targets: Sequence[str], source: str) -> list[str]:
    targets = [str(t) for t in targets]
    if not targets:
        raise S3RInputError(f"{source}: no targets given; name at least one target")
    return targets


def prepare_reference_csv(
    x_path: str | os.PathLike,
    y_path: str | os.PathLike,
    coords_path: str | os.PathLike,
    *,
    targets: Sequence[str],
    features: Sequence[str] | str = "all",
    normalize="auto",
    target_sum: float = 1e4,
    max_features: int | None = None,
    standardize: bool = True,
    log=sys.stderr,
    raw_targets: bool = False,
    offset: str | None = None,
) -> PreparedSample:
    """Reference CSV triplet → PreparedSample. Library sizes are X's column sums (its features).

    ``raw_targets``: keep the targets as they are (counts, for a count family's data fit) while the features are
    normalised; ``offset``: None or 'log_library_size'."""
    import pandas as pd

    from s3r.io import read_reference_csv

    targets = _check_targets_listed(targets, str(y_path))
    data = read_reference_csv(x_path, y_path, coords_path, target=targets[0])  # validates all three files
    ydf = pd.read_csv(y_path, index_col=0, dtype={0: str})
    ydf.index = [str(s).strip() for s in ydf.index]
    ydf.columns = [str(c).strip() for c in ydf.columns]
    for t in targets:
        if t not in ydf.columns:
            raise S3RInputError(f"{y_path}: target {t!r} is not a column of the Y file; columns are {list(ydf.columns)}")
    Y = ydf.loc[data.spot_ids, targets].to_numpy(dtype=np.float64)
    X = data.X
    names = list(data.feature_names)

    x_counts = holds_counts(X)
    normalized = _should_normalize(normalize, x_counts, bool((X >= 0).all()), str(x_path))
    offset = _auto_offset(offset, normalized and x_counts)
    totals = X.sum(axis=1) if x_counts else None
    offset_values = _offset(offset, totals, None, str(x_path))
    if normalized:
        totals = X.sum(axis=1)
        X = _log_normalize(X, totals, target_sum)
        if holds_counts(Y) and not raw_targets:
            Y = _log_normalize(Y, totals, target_sum)
    controls = left_out_controls(names, features, targets, str(x_path), log)
    X, names = select_columns(X, names, features, targets, max_features, str(x_path), controls)
    X, names, mean, scale, dropped = _standardize(X, names, standardize, str(x_path), log)
    return PreparedSample(
        X=X, Y=Y, coords=data.coords, spot_ids=data.spot_ids, feature_names=names, target_names=targets,
        feature_mean=mean, feature_scale=scale,
        info={
            "input": "reference_csv",
            "input_counts": x_counts,
            "normalized": normalized,
            "target_sum": target_sum if normalized else None,
            "n_input_features": len(data.feature_names),
            "control_probes_left_out": controls,
            "dropped_constant": dropped,
            "standardized": bool(standardize),
            "raw_targets": bool(raw_targets),
            "offset": offset,
        },
        offset=offset_values,
    )


def prepare_h5ad(
    path: str | os.PathLike,
    *,
    targets: Sequence[str],
    features: Sequence[str] | str = "all",
    covariates: Sequence[str] = (),
    layer: str | None = None,
    spatial_key: str = "spatial",
    normalize="auto",
    target_sum: float = 1e4,
    max_features: int | None = None,
    standardize: bool = True,
    log=sys.stderr,
    raw_targets: bool = False,
    offset: str | None = None,
) -> PreparedSample:
    """AnnData → PreparedSample (``raw_targets``, ``offset``: as for :func:`prepare_reference_csv`; the offset may
    also name an .obs column). ``features``: gene list, 'all', or 'obsm:<key>' (used as given, e.g.
    cell-type proportions: not normalised). Library sizes are row sums over all genes of ``.X``/the layer."""
    import pandas as pd

    from s3r.io import read_h5ad

    adata, source = _open_h5ad(path)
    targets = _check_targets_listed(targets, source)
    _check_normalize(normalize)
    if layer is not None and layer not in adata.layers:
        raise S3RInputError(f"{source}: layer {layer!r} not found; layers are {', '.join(adata.layers.keys()) or 'none'}")
    matrix = adata.X if layer is None else adata.layers[layer]
    var_names = pd.Index([str(v) for v in adata.var_names])

    gene_targets = [t for t in targets if t in var_names]
    counts = matrix is not None and holds_counts(matrix)
    nonnegative = matrix is not None and bool(((matrix.data if sp.issparse(matrix) else np.asarray(matrix)) >= 0).all())
    normalized = matrix is not None and _should_normalize(normalize, counts, nonnegative, source)
    totals = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel() if normalized else None

    obsm_key = features[5:] if isinstance(features, str) and features.startswith("obsm:") else None
    controls = left_out_controls(var_names, features, targets, source, log, adata.var.get("feature_types"))
    feature_arg = obsm_key if obsm_key is not None else feature_genes(
        features, matrix, var_names, targets, source, max_features=max_features, totals=totals,
        target_sum=target_sum, controls=controls)

    # The library reader does the checks and densifies only the chosen columns.
    data = read_h5ad(
        adata, target=targets[0], features=feature_arg, layer=layer, spatial_key=spatial_key, covariates=covariates,
        source=source,
    )
    Y = _target_matrix(adata, matrix, var_names, targets, source)

    X = data.X
    offset = _auto_offset(offset, normalized and counts)
    lib = totals if totals is not None else (np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel() if counts else None)
    offset_values = _offset(offset, lib, adata.obs, source)
    if normalized:
        if obsm_key is None:
            X = _log_normalize(X, totals, target_sum)
        genes = [j for j, t in enumerate(targets) if t in gene_targets and not raw_targets]
        Y[:, genes] = _log_normalize(Y[:, genes], totals, target_sum)
    X, names, mean, scale, dropped = _standardize(X, list(data.feature_names), standardize, source, log)
    return PreparedSample(
        X=X, Y=Y, coords=data.coords, spot_ids=data.spot_ids, feature_names=names, target_names=targets,
        covariates=data.covariates, covariate_names=list(data.covariate_names),
        feature_mean=mean, feature_scale=scale,
        info={
            "input": "h5ad",
            "input_counts": counts,
            "normalized": normalized,
            "target_sum": target_sum if normalized else None,
            "n_input_features": len(var_names) - len(gene_targets) if obsm_key is None else len(data.feature_names),
            "feature_source": f".obsm[{obsm_key!r}]" if obsm_key else (f".layers[{layer!r}]" if layer else ".X"),
            "control_probes_left_out": controls,
            "dropped_constant": dropped,
            "standardized": bool(standardize),
            "raw_targets": bool(raw_targets),
            "offset": offset,
        },
        offset=offset_values,
    )


def _open_h5ad(path):
    """(AnnData, the name messages use for it): read from disk, or as given when already in memory."""
    import anndata

    if isinstance(path, anndata.AnnData):  # already read, e.g. from a Space Ranger or Xenium folder
        from s3r.readers import input_source

        return path, input_source(path)
    source = str(path)
    if not Path(path).is_file():
        raise S3RInputError(f"{source}: h5ad file not found; check the path")
    return anndata.read_h5ad(path), source


def _target_matrix(adata, matrix, var_names: pd.Index, targets: list[str], source: str) -> np.ndarray:
    """(spots, targets): each target a gene of the matrix or a numeric .obs column, every value finite."""
    Y = np.empty((adata.n_obs, len(targets)))
    for j, t in enumerate(targets):
        if t in var_names:
            col = matrix[:, int(var_names.get_loc(t))]
            col = col.toarray() if sp.issparse(col) else np.asarray(col)
            Y[:, j] = np.asarray(col, dtype=np.float64).ravel()
        elif t in adata.obs.columns and adata.obs[t].dtype.kind in "fiub":
            Y[:, j] = adata.obs[t].to_numpy(dtype=np.float64)
        else:
            raise S3RInputError(f"{source}: target {t!r} is neither a gene nor a numeric .obs column; check the name")
    if not np.isfinite(Y).all():
        j = int(np.argwhere(~np.isfinite(Y))[0, 1])
        raise S3RInputError(f"{source}: target {targets[j]!r} has NaN/infinite values; fix or drop those spots")
    return Y


def write_prepared(path: str | os.PathLike, prepared: PreparedSample) -> None:
    """One compressed .npz (atomic); strings as unicode arrays so it loads without pickle."""
    arrays = dict(
        X=prepared.X,
        Y=prepared.Y,
        coords=prepared.coords,
        spot_ids=np.array(prepared.spot_ids, dtype=str),
        feature_names=np.array(prepared.feature_names, dtype=str),
        target_names=np.array(prepared.target_names, dtype=str),
        covariate_names=np.array(prepared.covariate_names, dtype=str),
        feature_mean=prepared.feature_mean if prepared.feature_mean is not None else np.zeros(prepared.X.shape[1]),
        feature_scale=prepared.feature_scale if prepared.feature_scale is not None else np.ones(prepared.X.shape[1]),
        info=np.array(json.dumps(prepared.info)),
    )
    if prepared.covariates is not None:
        arrays["covariates"] = prepared.covariates
    if prepared.offset is not None:
        arrays["offset"] = prepared.offset
    write_npz(path, **arrays)


def read_prepared(path: str | os.PathLike) -> PreparedSample:
    with np.load(Path(path), allow_pickle=False) as f:
        return PreparedSample(
            X=f["X"],
            Y=f["Y"],
            coords=f["coords"],
            spot_ids=f["spot_ids"].tolist(),
            feature_names=f["feature_names"].tolist(),
            target_names=f["target_names"].tolist(),
            covariates=f["covariates"] if "covariates" in f.files else None,
            covariate_names=f["covariate_names"].tolist(),
            feature_mean=f["feature_mean"],
            feature_scale=f["feature_scale"],
            info=json.loads(str(f["info"])),
            offset=f["offset"] if "offset" in f.files else None,
        )
