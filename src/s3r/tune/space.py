"""The tuning configuration and search space: defaults, checks, and the map from a search point to λ, α, β."""

from __future__ import annotations

import copy
import math

import numpy as np

from s3r import cv
from s3r.errors import S3RInputError


PARAM_NAMES = ("lambda_smooth", "alpha", "beta")
SELECTIONS = ("best", "one_se", "one_se_features")
FORMAT = "s3r-tune/1"
# iterations per warm-started solve call: the PDHG balances its steps at every 50th iteration of a call (session 20);
# s3r.solver.primal_dual's CHECK_EVERY × READ_EVERY, written out so the start-up checks import no torch (a test ties them)
MIN_CHUNK = 50
MIN_WINDOW = 200  # the smallest window a search may run on: five folds of 40 spots

DEFAULT_CONFIG: dict = {
    "seed": 0,
    "n_trials": 30,
    "rounds": 3,
    "folds": 5,
    "fold_scheme": "random",
    "blocks_per_fold": cv.DEFAULT_BLOCKS_PER_FOLD,
    "predictor": "graph",
    "selection": "one_se",
    # a target's search ends after a round in which a yardstick (the intercept-only model, the spatial trend) beats
    # even its best trial by more than their paired SE: its verdict is "no effect" (s3r.tune.study.stop_reason)
    "stop_early": True,
    # sections with more spots are tuned on a window of this many (s3r.tune.window: the spots nearest the centre, in the
    # section's search box; penalties are per spot, so the choice transfers) and the final fit runs on every spot; null: all
    "max_spots": 10_000,
    # ranges relative to the data's natural scales (Problem.natural_scales: the exact α and β that zero every
    # coefficient of the spatially constant model — glmnet's λ_max of the pooled problem — and the λ that holds
    # every map constant), so every search spans "nothing selected" to "nearly unpenalised" on any data set;
    # relative: false makes low/high absolute values; a number fixes a parameter (absolute). Measured on the
    # realistic simulations and DLPFC: the selected α, β sit at 1e-3–1e-1 of these scales, λ at 1e-3–1e-1.
    "space": {
        "lambda_smooth": {"low": 1e-4, "high": 1.0, "log": True, "relative": True},
        "alpha": {"low": 1e-4, "high": 1.0, "log": True, "relative": True},
        "beta": {"low": 1e-4, "high": 1.0, "log": True, "relative": True},
    },
    # null = the parameterisation's default (s3r.problem.resolve_model): standard scaling with an intercept,
    # scaled features and no zero mask; compat: true (or scaling: reference) gives the reference implementation's
    "model": {
        "smooth": "tv",
        "graph": "knn",
        "k": 7,
        "radius": None,
        "max_edge_length": None,
        "compat": False,
        "scaling": None,
        "mask_zero_response": None,
        "standardize": None,
        "fit_intercept": None,
        "spatial_intercept": False,
        # data fit: CV loss is the held-out mean deviance (MSE for gaussian); NB theta: a number, null (1) or
        # "estimate" (the final fit estimates θ; CV ranks trials at the intercept model's θ, cv.reference_theta)
        "family": "gaussian",
        "theta": None,
    },
    # CV only ranks parameter sets: float32 and a relative residual of 1e-2 (the final fit uses 1e-5) move held-out
    # losses by a few per cent, well inside their fold-to-fold spread; the iteration cap stops the heavily smoothed
    # trials (λ near 1), which the solver is slowest on and CV rejects anyway, from taking most of the time
    # batch: parameter sets per batched solve, 0 = all on a GPU, cv.CPU_BATCH on a CPU; contend_max_iter (0 = off): the cap
    # of the capped trials that lead a fold's ranking, solved on so that the head of the ranking is converged
    # (tune.evaluate.continue_contenders; off by default until the one-SE rule's window is solved on as well, session 35)
    "solver": {"tol": 1e-2, "max_iter": 500, "contend_max_iter": 0, "chunk": 100, "batch": 0, "dtype": "float32", "device": "auto", "warm_start": True},
}


def resolve_config(config: dict | None = None) -> dict:
    """Defaults filled in and values checked; unknown keys are an error (a misspelt key would be ignored)."""
    merged = copy.deepcopy(DEFAULT_CONFIG)
    for key, value in (config or {}).items():
        if key not in merged:
            raise S3RInputError(f"unknown tuning setting {key!r}; known: {', '.join(merged)}")
        if isinstance(merged[key], dict) and key != "space":
            if not isinstance(value, dict):
                raise S3RInputError(f"tuning setting {key!r} must be a mapping")
            unknown = set(value) - set(merged[key])
            if unknown:
                raise S3RInputError(f"unknown tuning setting {key}.{sorted(unknown)[0]}; known: {', '.join(merged[key])}")
            merged[key].update(value)
        elif key == "space":
            if not isinstance(value, dict) or set(value) - set(PARAM_NAMES):
                raise S3RInputError(f"tuning space must map {', '.join(PARAM_NAMES)} to ranges or fixed numbers")
            merged["space"].update(value)
        else:
            merged[key] = value
    for name in ("n_trials", "rounds", "folds", "blocks_per_fold", "seed"):
        if not isinstance(merged[name], (int, np.integer)) or isinstance(merged[name], bool) or merged[name] < (0 if name == "seed" else 1):
            raise S3RInputError(f"tuning setting {name} must be a whole number ≥ {0 if name == 'seed' else 1}; got {merged[name]!r}")
    if isinstance(merged["space"], dict):
        for name in PARAM_NAMES:  # a partial range (say only "high") keeps the default's other keys
            spec = merged["space"][name]
            if isinstance(spec, dict) and not {"low", "high"} <= set(spec):
                merged["space"][name] = {**DEFAULT_CONFIG["space"][name], **spec}
    limit = merged["max_spots"]
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < MIN_WINDOW):
        raise S3RInputError(f"tuning setting max_spots must be a whole number ≥ {MIN_WINDOW} or null (every spot); got {limit!r}")
    if not isinstance(merged["stop_early"], bool):
        raise S3RInputError(f"tuning setting stop_early must be true or false; got {merged['stop_early']!r}")
    if merged["rounds"] > merged["n_trials"]:
        raise S3RInputError(f"{merged['rounds']} rounds need at least as many trials; got {merged['n_trials']}")
    if merged["folds"] < 2:
        raise S3RInputError("cross-validation needs at least 2 folds")
    for name, choices in (("fold_scheme", cv.FOLD_SCHEMES), ("predictor", cv.PREDICTORS), ("selection", SELECTIONS)):
        if merged[name] not in choices:
            raise S3RInputError(f"tuning setting {name} must be one of {', '.join(choices)}; got {merged[name]!r}")
    for name in PARAM_NAMES:
        merged["space"][name] = _check_range(name, merged["space"][name])
    _check_family(merged["model"])
    from s3r.tune.variants import check_choices

    check_choices(merged["model"])
    solver = merged["solver"]
    if not solver["tol"] > 0 or int(solver["max_iter"]) < 1 or int(solver["contend_max_iter"]) < 0 or int(solver["chunk"]) < MIN_CHUNK or int(solver["batch"]) < 0:
        raise S3RInputError(f"tuning solver settings need tol > 0, max_iter ≥ 1, contend_max_iter ≥ 0, chunk ≥ {MIN_CHUNK} and batch ≥ 0 (got "
                            f"tol {solver['tol']}, max_iter {solver['max_iter']}, contend_max_iter {solver['contend_max_iter']}, chunk {solver['chunk']}, batch {solver['batch']}); "
                            f"a chunk under {MIN_CHUNK} iterations never reaches the solver's step balancing")
    return merged


def _check_family(model: dict) -> None:
    from s3r.glm.families import FAMILIES

    if model["family"] not in FAMILIES:
        raise S3RInputError(f"tuning model.family must be one of {', '.join(FAMILIES)}; got {model['family']!r}")
    theta = model["theta"]
    ok = theta is None or theta == "estimate" or (isinstance(theta, (int, float)) and not isinstance(theta, bool) and math.isfinite(theta) and theta > 0)
    if not ok:
        raise S3RInputError(f"tuning model.theta must be a number > 0, null or 'estimate'; got {theta!r}")


def _check_range(name: str, spec):
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        if not math.isfinite(spec) or spec < 0:
            raise S3RInputError(f"fixed {name} must be a finite number ≥ 0; got {spec}")
        return float(spec)
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log", "relative"}:
        raise S3RInputError(f"search range for {name} must be {{low, high, log, relative}} or a fixed number; got {spec!r}")
    low, high, log = float(spec["low"]), float(spec["high"]), bool(spec.get("log", True))
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high <= low or (log and low <= 0):
        raise S3RInputError(f"search range for {name} needs 0 ≤ low < high (low > 0 on a log scale); got [{low}, {high}]")
    return {"low": low, "high": high, "log": log, "relative": bool(spec.get("relative", False))}


def _relative(config: dict) -> bool:
    return any(isinstance(spec, dict) and spec["relative"] for spec in config["space"].values())


def absolute_params(config: dict, search: dict, scales: dict | None) -> dict:
    """λ, α, β for a point of the search space: relative coordinates times the data's natural scales."""
    out = {}
    for name in PARAM_NAMES:
        spec = config["space"][name]
        if not isinstance(spec, dict):
            out[name] = float(spec)
        elif spec["relative"]:
            if scales is None:
                raise S3RInputError("a relative search range needs the data's natural scales (Problem.natural_scales)")
            out[name] = float(search[name]) * float(scales[name])
        else:
            out[name] = float(search[name])
    return out


def _distributions(config: dict) -> dict:
    from optuna.distributions import FloatDistribution

    return {
        name: FloatDistribution(spec["low"], spec["high"], log=spec["log"])
        for name, spec in config["space"].items() if isinstance(spec, dict)
    }


def _full_params(config: dict, tuned: dict) -> dict:
    """Tuned values plus fixed ones, in the fixed order λ, α, β."""
    return {name: float(tuned[name]) if name in tuned else float(config["space"][name]) for name in PARAM_NAMES}


def round_sizes(n_trials: int, rounds: int) -> list[int]:
    """Trials per round: as even as possible, the first (space-filling) round taking any remainder."""
    base, extra = divmod(int(n_trials), int(rounds))
    return [base + (extra if r == 0 else 0) for r in range(int(rounds))]


def _log_params(params: list[dict], config: dict) -> np.ndarray:
    """Parameters on the unit scale the search uses (log where the range is logarithmic)."""
    cols = []
    for name, spec in config["space"].items():
        if not isinstance(spec, dict):
            continue
        values = np.array([p[name] for p in params], dtype=np.float64)
        if spec["log"]:
            values = (np.log(values) - math.log(spec["low"])) / (math.log(spec["high"]) - math.log(spec["low"]))
        else:
            values = (values - spec["low"]) / (spec["high"] - spec["low"])
        cols.append(values)
    return np.stack(cols, axis=1) if cols else np.zeros((len(params), 0))
