"""Config (plus a row's overrides) -> the keyword arguments each job passes to the library.

Kept apart from the rules so the mapping is tested without Snakemake, and so an unknown or inconsistent
setting fails when the workflow starts instead of inside a job.
"""

from __future__ import annotations

from typing import Any

from s3r.errors import S3RInputError
from s3r.workflow.samples import _GRAPH_OVERRIDES, _MODEL_OVERRIDES, SampleSpec
from s3r.workflow.sheet import suggest

__all__ = ["model_settings", "tune_settings", "graph_settings", "check_deconvolve_options", "perturbseq_fit_options"]


def model_settings(config: dict, spec: SampleSpec) -> dict[str, Any]:
    """S3R keyword arguments for one sample: config 'model' and 'graph' with the row's overrides on top."""
    settings = dict(config["model"])
    settings.update({k: v for k, v in spec.overrides.items() if k in _MODEL_OVERRIDES})
    graph = graph_settings(config, spec)
    settings.update(
        graph=graph["method"], k=graph["k"], radius=graph["radius"], max_edge_length=graph["max_edge_length"]
    )
    return settings


_TUNE_MODEL_KEYS = ("smooth", "graph", "k", "radius", "max_edge_length", "compat", "scaling", "mask_zero_response", "fit_intercept",
                    "spatial_intercept", "family", "theta")


def tune_settings(config: dict, spec: SampleSpec) -> dict[str, Any]:
    """The s3r.tune configuration for one sample: config 'tune' around the sample's model and graph."""
    from s3r.tune import resolve_config

    tune = config["tune"]
    model = model_settings(config, spec)
    settings = {
        key: tune[key] for key in ("seed", "n_trials", "rounds", "folds", "fold_scheme", "selection", "stop_early", "max_spots") if key in tune
    }
    settings["space"] = dict(tune.get("space") or {})
    # a λ, α or β the sample sheet sets for this sample is held fixed in its search (not silently searched over)
    settings["space"].update({key: float(spec.overrides[key]) for key in ("lambda_smooth", "alpha", "beta") if spec.overrides.get(key) is not None
                              and spec.overrides[key] == spec.overrides[key]})
    settings["model"] = {key: model[key] for key in _TUNE_MODEL_KEYS if key in model}
    settings["solver"] = dict(tune.get("solver") or {})
    try:
        resolve_config(settings)
    except S3RInputError as err:
        raise S3RInputError(f"config tune (sample {spec.name}): {err}") from None
    return settings


def graph_settings(config: dict, spec: SampleSpec) -> dict[str, Any]:
    settings = dict(config["graph"])
    settings.update({_GRAPH_OVERRIDES[k]: v for k, v in spec.overrides.items() if k in _GRAPH_OVERRIDES})
    return settings


def check_deconvolve_options(options: dict, section: str = "options") -> None:
    """Unknown option names fail at start-up rather than in a GPU job ('options': components mode,
    'proportions': proportions mode)."""
    import inspect

    from s3r.deconv import CellTypeProportions, Deconvolution

    estimator = CellTypeProportions if section == "proportions" else Deconvolution
    known = [p for p in inspect.signature(estimator.__init__).parameters if p not in ("self", "device", "verbose")]
    for key in options:
        if key not in known:
            raise S3RInputError(
                f"config: unknown setting 'deconvolve.{section}.{key}'{suggest(key, known)}; known: {', '.join(known)}"
            )


_PERTURBSEQ_FIT_KEYS = ("family", "theta", "l1_ratio", "alpha", "n_alphas", "eps", "cv", "selection", "n_top_genes", "n_programmes",
                        "programme_threshold", "n_modules", "module_threshold")


def perturbseq_fit_options(settings: dict) -> dict[str, Any]:
    """The :func:`s3r.perturb.fit_perturbseq` keyword arguments from config ``perturbseq``."""
    return {key: settings[key] for key in _PERTURBSEQ_FIT_KEYS if key in settings}
