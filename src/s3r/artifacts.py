"""On-disk artefacts that more than one part of s3r writes or reads, each defined once: name, writer, reader.

``best_params.json`` is written by ``s3r tune`` and by the workflow (tuned or from config) and read by
``s3r fit``, the workflow's final fit, the fit report and the summary table; one schema and one reader keep
them from guessing which shape they got::

    {"format": "s3r-params/1", "source": "tune" | "config", "sample": ..., "target": ...,   # the last two: workflow
     "params": {S3R keyword arguments: lambda_smooth, alpha, beta, smooth, ...},
     "tuning": {trial, cv_loss, cv_se, null_cv_loss, effect_found, verdict, warnings, model, ...}}  # absent: not tuned

The reader also accepts the flat files of earlier versions (λ, α, β and the tuning record at the top level,
or the reference implementation's ``lambda``).
"""

from __future__ import annotations

from typing import Any


__all__ = ["PARAMS_FILE", "PARAMS_FORMAT", "PARAM_KEYS", "DECONV_SUMMARY", "write_params", "read_params_file"]

PARAMS_FILE = "best_params.json"
PARAMS_FORMAT = "s3r-params/1"
PARAM_KEYS = ("lambda_smooth", "alpha", "beta")
DECONV_SUMMARY = "deconvolve.json"  # the deconvolution's JSON summary, from `s3r deconvolve` and the workflow
_TUNING_MARKERS = ("trial", "cv_loss")


# what a fit carries over from its tuning: the verdict in words, its numbers and the range warnings
VERDICT_KEYS = ("effect_found", "verdict", "warnings", "cv_loss", "null_cv_loss", "trend_cv_loss")


def write_params(path, params: dict[str, Any], *, source: str, tuning: dict | None = None, sample: str | None = None,
                 target: str | None = None) -> dict[str, Any]:
    """Write the parameter file (schema above) atomically and return the document."""
    from s3r.io import write_json

    doc: dict[str, Any] = {"format": PARAMS_FORMAT}
    if sample is not None:
        doc["sample"] = sample
    if target is not None:
        doc["target"] = target
    doc["source"] = source
    doc["params"] = dict(params)
    if tuning is not None:
        doc["tuning"] = tuning
    write_json(doc, path)
    return doc


def read_params_file(path) -> dict[str, Any]:
    """The parameter file as ``{"source", "params", "tuning" (dict or None), "sample", "target"}``.

    Raises S3RInputError when the file is missing, not JSON or not an object; the values themselves are
    checked by their users (``s3r.results.read_params`` checks λ, α, β).
    """
    from s3r.io import read_json_object

    raw = read_json_object(path, f"parameter file not found; pass the {PARAMS_FILE} written by 's3r tune'",
                           f"with keys {', '.join(PARAM_KEYS)}")
    if isinstance(raw.get("params"), dict) or isinstance(raw.get("tuning"), dict):
        params = dict(raw.get("params") or {})
        tuning = raw.get("tuning") if isinstance(raw.get("tuning"), dict) else None
    else:  # a flat file from an earlier version, or the reference implementation's
        params = {key: raw[key] for key in (*PARAM_KEYS, "lambda", "smooth") if key in raw}
        tuning = raw if any(key in raw for key in _TUNING_MARKERS) else None
    if "lambda_smooth" not in params and "lambda" in params:
        params["lambda_smooth"] = params.pop("lambda")
    source = raw.get("source") or ("tune" if tuning is not None else None)
    return {"source": source, "params": params, "tuning": tuning, "sample": raw.get("sample"), "target": raw.get("target")}
