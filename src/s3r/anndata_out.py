"""Fit results back into AnnData, in the places scanpy and squidpy look.

Per target: ``.obsm['s3r_<target>']`` (spots × features coefficients, a DataFrame with the feature names),
``.obs['s3r_<target>_fitted']`` and ``.obs['s3r_<target>_observed']``, one ``.obs['s3r_<target>:<feature>']``
column per selected feature (so ``scanpy.pl.spatial(adata, color='s3r_MBP:PLP1')`` draws a coefficient map
without further work), and ``.uns['s3r'][<target>]`` with the parameters, the CV evidence, the normalisation
and the selected features. The input's spots, counts, images and scale factors are kept as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.artifacts import VERDICT_KEYS as CV_KEYS
from s3r.io import atomic_path

__all__ = ["input_anndata", "anndata_from_prepared", "attach_fit", "write_results_h5ad"]


def _h5_safe(value):
    """A value h5ad can store in .uns: None dropped, lists as arrays, mixed lists and odd objects as JSON text."""
    if isinstance(value, dict):
        return {str(k): _h5_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        items = [v for v in value]
        if all(isinstance(v, str) for v in items):
            return np.array(items, dtype=object) if items else np.array([], dtype=object)
        if all(isinstance(v, (bool, np.bool_)) for v in items) or all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in items
        ):
            return np.asarray(items)
        return json.dumps(items, default=str)
    if isinstance(value, (str, bool, int, float, np.generic, np.ndarray)):
        return value
    return str(value)


def anndata_from_prepared(X, feature_names, spot_ids, coords):
    """The spots of an input that was not AnnData (the CSV triplet): features as fitted, coordinates."""
    import anndata

    return anndata.AnnData(
        X=np.asarray(X, dtype=np.float64),
        obs=pd.DataFrame(index=pd.Index([str(s) for s in spot_ids], dtype=object)),
        var=pd.DataFrame(index=pd.Index([str(f) for f in feature_names], dtype=object)),
        obsm={"spatial": np.asarray(coords, dtype=np.float64)},
    )


def input_anndata(loaded):
    """A copy of the input spots for s3r fit --write-h5ad (the CSV triplet becomes a small AnnData)."""
    if loaded.adata is not None:
        return loaded.adata.copy()
    d = loaded.data
    return anndata_from_prepared(d.X, d.feature_names, d.spot_ids, d.coords)


def attach_fit(adata, *, fit_dir, cv: dict | None = None) -> str:
    """Add one target's fit (coefficients.npz + fit.json of ``fit_dir``) to ``adata``; returns the target name.

    Spots are matched by id; input spots the fit did not use get NaN."""
    fit_dir = Path(fit_dir)
    report = json.loads((fit_dir / "fit.json").read_text())
    with np.load(fit_dir / "coefficients.npz", allow_pickle=False) as f:
        coef, spots, features = f["coef"], f["spot_ids"].tolist(), f["feature_names"].tolist()
        fitted, observed = f["fitted"], f["observed"]
    target = str(report["target"])
    obs_names = pd.Index([str(o) for o in adata.obs_names])
    unknown = pd.Index(spots).difference(obs_names)
    if len(unknown):
        raise ValueError(f"{fit_dir}: {len(unknown)} fitted spot(s) are not in the AnnData (e.g. {unknown[0]!r}); write the input it was fitted on")
    frame = pd.DataFrame(coef, index=pd.Index(spots, dtype=object), columns=pd.Index(features, dtype=object)).reindex(obs_names)
    frame.index = adata.obs_names
    adata.obsm[f"s3r_{target}"] = frame
    adata.obs[f"s3r_{target}_fitted"] = pd.Series(fitted, index=spots).reindex(obs_names).to_numpy()
    adata.obs[f"s3r_{target}_observed"] = pd.Series(observed, index=spots).reindex(obs_names).to_numpy()
    selected = [name for j, name in enumerate(features) if np.any(coef[:, j] != 0)]
    for name in selected:
        adata.obs[f"s3r_{target}:{name.replace('/', '_')}"] = frame[name].to_numpy()
    params = report.get("parameters", {})
    entry = {
        "target": target,
        "parameters": {k: params.get(k) for k in ("smooth", "lambda_smooth", "alpha", "beta", "family", "theta", "graph", "k", "scaling")},
        "selected_features": selected,
        "n_features": len(features),
        "cv": cv or {},
        "normalisation": report.get("normalisation", {}),
        "r2": report.get("r2"),
        "converged": report.get("converged"),
        "intercept": report.get("intercept"),
        # what the final fit is (the chosen trial, or the intercept-only model after a "no effect" verdict)
        "final_model": (report.get("extra") or {}).get("final_model"),
        "fit_dir": str(fit_dir),
    }
    uns = dict(adata.uns.get("s3r", {}))
    uns[target] = _h5_safe(entry)
    adata.uns["s3r"] = uns
    return target


def write_results_h5ad(adata, path) -> Path:
    """Write atomically, so an interrupted job never leaves a truncated .h5ad that looks complete."""
    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path



def sample_anndata(*, prepared_path, fit_jsons, params_jsons=(), h5ad=None, domains_tsv=None):
    """The workflow's results/anndata/<sample>.h5ad: the sample's input (its .h5ad, else the prepared features),
    every target's fit with the CV evidence of its best_params.json, and the sample's spatial domains."""
    import anndata

    from s3r.preprocess import read_prepared

    if h5ad:
        adata = anndata.read_h5ad(h5ad)
    else:
        prepared = read_prepared(prepared_path)
        adata = anndata_from_prepared(prepared.X, prepared.feature_names, prepared.spot_ids, prepared.coords)
    params_jsons = list(params_jsons) or [None] * len(fit_jsons)
    for fit_json, params_json in zip(fit_jsons, params_jsons):
        cv = {}
        if params_json:
            tuning = json.loads(Path(params_json).read_text()).get("tuning", {})
            cv = {key: tuning[key] for key in CV_KEYS if key in tuning}
        attach_fit(adata, fit_dir=Path(fit_json).parent, cv=cv)
    if domains_tsv:
        table = pd.read_csv(domains_tsv, sep="\t", dtype=str).set_index("spot")["domain"]
        adata.obs["s3r_domain"] = pd.Categorical(table.reindex([str(o) for o in adata.obs_names]).to_numpy())
    return adata
