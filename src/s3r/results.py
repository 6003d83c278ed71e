"""Fit outputs on disk: coefficients in the reference orientation, a binary copy, and the fit report.

``fit.json`` is written last, so its presence marks a complete result directory; every file is written
atomically, so a killed job never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.artifacts import PARAM_KEYS, read_params_file
from s3r.errors import S3RInputError
from s3r.io import RegressionData, write_csv, write_json, write_npz



def library_versions() -> dict[str, str]:
    import scipy
    import torch

    from s3r import __version__

    return {
        "s3r": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
    }


def write_fit(out_dir, model, data: RegressionData, params: dict | None = None, inputs: dict | None = None, offset=None,
              normalisation: dict | None = None) -> Path:
    """Write coefficients.csv (features × spots), coefficients.npz and fit.json into ``out_dir``.

    ``offset``: the one the count-family fit used, so the reported r2 (deviance explained) scores that model;
    ``normalisation``: what the counts policy did to the values (s3r.counts.describe), recorded in fit.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    coef = pd.DataFrame(model.coef_.T, index=data.feature_names, columns=data.spot_ids)
    write_csv(coef, out / "coefficients.csv")
    write_npz(
        out / "coefficients.npz",
        coef=model.coef_,
        spot_ids=np.asarray(data.spot_ids),
        feature_names=np.asarray(data.feature_names),
        coords=data.coords,
        covariate_coef=np.asarray(model.covariate_coef_),
        covariate_names=np.asarray(data.covariate_names),
        intercept=np.asarray(model.intercept_),
        observed=np.asarray(data.y, dtype=np.float64),
        fitted=np.asarray(model.predict(data.X, covariates=data.covariates, **({} if offset is None else {"offset": offset})), dtype=np.float64),
    )
    report = {
        **model.report_,
        "target": data.target_name,
        "parameters": {key: value for key, value in model.get_params().items() if key != "callback"},
        "r2": model.score(data.X, data.y, covariates=data.covariates, **({} if offset is None else {"offset": offset})),
        "trace": model.trace_,
        "inputs": inputs or {},
        **({"normalisation": normalisation} if normalisation is not None else {}),
        "extra": params or {},
        "versions": library_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(report, out / "fit.json")
    return out


def read_params(path) -> dict:
    """λ, α, β (checked) from a parameter file (:mod:`s3r.artifacts`), with ``smooth`` and the tuning's
    ``model`` settings when the file has them."""
    doc = read_params_file(path)
    raw = doc["params"]
    params = {}
    for key in PARAM_KEYS:
        if key not in raw:
            raise S3RInputError(f"{path}: missing key {key!r}; expected {', '.join(PARAM_KEYS)}")
        try:
            value = float(raw[key])
        except (TypeError, ValueError):
            raise S3RInputError(f"{path}: {key} must be a number, got {raw[key]!r}") from None
        if not np.isfinite(value) or value < 0:
            raise S3RInputError(f"{path}: {key} must be a finite number ≥ 0, got {value}")
        params[key] = value
    if "smooth" in raw:
        params["smooth"] = raw["smooth"]
    model = (doc["tuning"] or {}).get("model")
    if isinstance(model, dict):
        params["model"] = model
    return params
