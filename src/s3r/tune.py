"""Cross-validated tuning of λ, α, β in synchronous rounds: suggest → evaluate each fold → tell → select.

Every step reads and writes small JSON files, so a workflow can run each as a separate job (one job per
fold, on a GPU) and ``run_search`` can run the same steps in one process. No database is shared by concurrent
jobs: the result files are the record, and ``suggest`` rebuilds the Optuna study from them in trial-number
order with a sampler seeded from (seed, number of trials), which makes the proposals reproducible.
The finished study is exported once to an Optuna journal file for ``optuna-dashboard``.

Files (``DIR/round_{r}/``): ``trials.json`` (suggest), ``fold_{k}.json`` and ``fold_{k}.npz`` (evaluate_fold:
losses, and the solutions later rounds warm-start from), ``results.json`` (tell); then ``best_params.json``
(select), ``trials.tsv``, ``fold_scores.tsv`` and ``study.journal``. See docs/CONTRACT.md, "s3r.tune".
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from s3r import cv
from s3r.errors import S3RInputError
from s3r.io import RegressionData, atomic_path, write_csv, write_json, write_npz

__all__ = [
    "DEFAULT_CONFIG",
    "PARAM_NAMES",
    "resolve_config",
    "round_sizes",
    "suggest",
    "evaluate_fold",
    "evaluate_fold_targets",
    "tell",
    "select",
    "export_study",
    "write_tables",
    "run_search",
    "round_dir",
]

PARAM_NAMES = ("lambda_smooth", "alpha", "beta")
SELECTIONS = ("best", "one_se")
FORMAT = "s3r-tune/1"

DEFAULT_CONFIG: dict = {
    "seed": 0,
    "n_trials": 30,
    "rounds": 3,
    "folds": 5,
    "fold_scheme": "random",
    "blocks_per_fold": cv.DEFAULT_BLOCKS_PER_FOLD,
    "predictor": "graph",
    "selection": "one_se",
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
    # batch: parameter sets per batched solve, 0 = all on a GPU, cv.CPU_BATCH on a CPU
    "solver": {"tol": 1e-2, "max_iter": 500, "chunk": 100, "batch": 0, "dtype": "float32", "device": "auto", "warm_start": True},
}


# -- configuration ---------------------------------------------------------------------------------------
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
    solver = merged["solver"]
    if not solver["tol"] > 0 or int(solver["max_iter"]) < 1 or int(solver["chunk"]) < 1 or int(solver["batch"]) < 0:
        raise S3RInputError("tuning solver settings need tol > 0, max_iter ≥ 1, chunk ≥ 1 and batch ≥ 0")
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


def round_dir(out_dir, r: int) -> Path:
    return Path(out_dir) / f"round_{r}"


def _sampler_seed(seed: int, n_trials: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(n_trials)]).generate_state(1)[0])


def _read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise S3RInputError(f"{path}: tuning file not found; run the step that writes it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise S3RInputError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}; delete it and rerun that step") from None


def _load_results(results: Sequence) -> list[dict]:
    """Every recorded trial from results.json files (or already-loaded dicts), sorted by trial number."""
    trials = []
    for item in results:
        doc = item if isinstance(item, dict) else _read_json(item)
        trials.extend(doc["trials"])
    trials.sort(key=lambda t: t["number"])
    numbers = [t["number"] for t in trials]
    if numbers != list(range(len(numbers))):
        raise S3RInputError(f"tuning results do not hold trials 0..{len(numbers) - 1} exactly once (got {numbers[:10]}...); pass every earlier round's results.json")
    return trials


# -- ask -------------------------------------------------------------------------------------------------
def suggest(config: dict, previous: Sequence = (), out=None) -> dict:
    """Propose the next round's parameter sets from the earlier rounds' results.json files.

    Round 0 is a seeded, discrepancy-optimised Latin hypercube (space filling, so TPE starts from a spread
    of the whole box); later rounds ask TPE, rebuilt from all earlier trials in trial-number order and seeded
    from (seed, number of trials), for a batch at once (constant liar keeps the batch spread out).
    """
    import optuna

    config = resolve_config(config)
    history = _load_results(previous)
    r = len(previous)
    sizes = round_sizes(config["n_trials"], config["rounds"])
    if r >= len(sizes):
        raise S3RInputError(f"all {len(sizes)} rounds are done; nothing left to suggest")
    distributions = _distributions(config)
    batch = sizes[r]
    sampler_seed = _sampler_seed(config["seed"], len(history))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if r == 0:
        sampler_name = "latin_hypercube"
        tuned = _latin_hypercube(distributions, batch, sampler_seed)
    else:
        sampler_name = "tpe"
        sampler = optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True, constant_liar=True, n_startup_trials=sizes[0])
        study = optuna.create_study(direction="minimize", sampler=sampler)
        for trial in history:
            study.add_trial(_frozen(trial, distributions))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            asked = [study.ask(distributions) for _ in range(batch)]
        tuned = [dict(t.params) for t in asked]
    start = len(history)
    doc = {
        "format": FORMAT,
        "round": r,
        "sampler": sampler_name,
        "sampler_seed": sampler_seed,
        "distributions": {name: optuna.distributions.distribution_to_json(d) for name, d in distributions.items()},
        "trials": [_new_trial(config, start + i, r, t) for i, t in enumerate(tuned)],
    }
    if out is not None:
        write_json(doc, out)
    return doc


def _new_trial(config: dict, number: int, r: int, tuned: dict) -> dict:
    """A proposed trial: its point in the search space; absolute λ, α, β too when they need no data."""
    trial = {"number": number, "round": r, "search": {name: float(v) for name, v in tuned.items()}}
    if not _relative(config):
        trial["params"] = _full_params(config, tuned)
    return trial


def _search_point(trial: dict, distributions) -> dict:
    """The trial's coordinates in the search space (files of the earlier format hold only absolute params)."""
    point = trial.get("search") or trial["params"]
    return {name: point[name] for name in distributions}


def _latin_hypercube(distributions: dict, size: int, seed: int) -> list[dict]:
    from scipy.stats import qmc

    names = list(distributions)
    if not names:
        return [{} for _ in range(size)]
    unit = qmc.LatinHypercube(d=len(names), optimization="random-cd", rng=np.random.default_rng(seed)).random(size)
    points = []
    for row in unit:
        point = {}
        for name, u in zip(names, row):
            d = distributions[name]
            if d.log:
                point[name] = float(math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low))))
            else:
                point[name] = float(d.low + u * (d.high - d.low))
        points.append(point)
    return points


def _frozen(trial: dict, distributions: dict):
    import optuna

    params = _search_point(trial, distributions)
    attrs = {key: trial[key] for key in ("round", "std", "se", "fold_losses", "converged") if key in trial}
    value = trial.get("value")
    if value is None or not math.isfinite(value):
        return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params, distributions=distributions, user_attrs=attrs)
    return optuna.trial.create_trial(value=float(value), params=params, distributions=distributions, user_attrs=attrs)


# -- evaluate --------------------------------------------------------------------------------------------
def make_problem(data: RegressionData, config: dict, offset=None, graph=None) -> cv.CVProblem:
    """``offset`` (n,): log library size or another fixed part of log μ for the count families; ``graph``: a
    spot graph already built for these spots (the workflow's graph file), else built from the model settings."""
    from s3r.problem import assemble

    config = resolve_config(config)
    return assemble(data.X, data.y, data.coords, model=config["model"], covariates=data.covariates, offset=offset, graph=graph,
                    dtype=config["solver"]["dtype"], device=config["solver"]["device"])


def make_folds(coords, config: dict) -> np.ndarray:
    config = resolve_config(config)
    return cv.make_folds(coords, config["folds"], config["fold_scheme"], seed=config["seed"], blocks_per_fold=config["blocks_per_fold"])


def evaluate_fold(data, config: dict, trials, fold: int, out=None, *, warm_from: Sequence = (), state_out=None, problem: cv.CVProblem | None = None,
                  offset=None, scales: dict | None = None) -> dict:
    """Held-out loss of every trial in a round on one fold, solved as one batch.

    ``data`` is a RegressionData (or pass a prebuilt ``problem``); ``trials`` a trials.json (path or dict);
    ``warm_from`` the state files (fold_{k}.npz) this fold wrote in earlier rounds: each trial starts from the
    earlier solution nearest to it in log-parameter space, which is deterministic and involves no other job.
    The solutions go to ``state_out`` (default: ``out`` with suffix .npz) for the next rounds.
    """
    config = resolve_config(config)
    if problem is None:
        problem = make_problem(data, config, offset)
    stores = [_read_states(path) for path in warm_from]
    result, states = evaluate_fold_targets({"": problem}, config, {"": trials}, fold, warm={"": stores}, scales={"": scales})
    if out is not None or state_out is not None:
        write_npz(Path(state_out) if state_out is not None else Path(out).with_suffix(".npz"), **states[""])
    if out is not None:
        write_json(result[""], out)
    return result[""]


def evaluate_fold_targets(problems: dict, config: dict, trials: dict, fold: int, *, warm: dict | None = None,
                          scales: dict | None = None) -> tuple[dict, dict]:
    """:func:`evaluate_fold` for several targets of one sample in one batched solve (``cv.solve_fold_targets``).

    Every mapping is keyed by target: ``problems`` (sharing the design), ``trials`` (each target's own study's
    trials.json doc), ``warm`` (each target's earlier state dicts on this fold, as :func:`_read_states` gives),
    ``scales`` (natural scales, computed when missing). Returns (fold results, state arrays) by target; the
    results are what :func:`evaluate_fold` writes, so :func:`tell` and :func:`select` work on them unchanged.
    """
    config = resolve_config(config)
    names = list(problems)
    folds = make_folds(problems[names[0]].coords, config)
    fold = int(fold)
    if not 0 <= fold < config["folds"]:
        raise S3RInputError(f"fold must be in 0..{config['folds'] - 1}; got {fold}")
    solver = config["solver"]
    plans = {}
    for name in names:
        problem, doc = problems[name], trials[name] if isinstance(trials[name], dict) else _read_json(trials[name])
        scale = (scales or {}).get(name)
        if scale is None and _relative(config):  # deterministic from the data: every fold job computes the same
            scale = problem.natural_scales()
        entries = doc["trials"]
        search = [t.get("search") or t["params"] for t in entries]
        params = [absolute_params(config, t.get("search", t.get("params", {})), scale) for t in entries]
        start, sources = None, [None] * len(entries)
        stores = (warm or {}).get(name) or []
        if solver["warm_start"] and stores:
            start, sources = _nearest_warm_start(search, stores, config)
            expected = (problem.n_spots, problem.X.shape[1])
            if (start["W"].shape[0], start["W"].shape[2]) != expected:
                raise S3RInputError(f"warm-start states of target {name!r} are for another problem ({start['W'].shape[0]} × "
                                    f"{start['W'].shape[2]}, not {expected[0]} × {expected[1]}); delete them and rerun")
        plans[name] = {"doc": doc, "search": search, "params": params, "warm": start, "sources": sources, "scales": scale}
    solutions = cv.solve_fold_targets(
        [problems[name] for name in names], [plans[name]["params"] for name in names], folds, fold, tol=solver["tol"],
        max_iter=int(solver["max_iter"]), chunk=int(solver["chunk"]), warm=[plans[name]["warm"] for name in names],
        batch=int(solver["batch"]),
    )
    results, states = {}, {}
    for name, solution in zip(names, solutions):
        results[name], states[name] = _fold_record(problems[name], config, plans[name], solution, folds, fold)
    return results, states


def _fold_record(problem, config: dict, plan: dict, solution, folds, fold: int) -> tuple[dict, dict]:
    """One target's fold result (losses, convergence, map sizes, the null model) and its warm-start state."""
    doc, params, entries, solver = plan["doc"], plan["params"], plan["doc"]["trials"], config["solver"]
    losses = cv.fold_losses(problem, solution, folds, fold, config["predictor"], k=config["model"]["k"])
    pieces = cv.map_pieces(problem, solution.W)
    held = cv.heldout_mask(folds, fold)
    result = {
        "format": FORMAT,
        "round": doc["round"],
        "fold": fold,
        "n_heldout": int(held.sum()),
        "n_scored": int(cv.scored_spots(problem.y, held, problem.mask_zero_response).sum()),
        "seconds": solution.seconds,
        "family": problem.family,
        "theta": problem.theta,
        "scales": plan["scales"],
        "null_loss": cv.null_loss(problem, folds, fold),
        # the trend yardstick once per tuning (round 0): it does not depend on the trials
        "trend_losses": cv.trend_losses(problem, folds, fold, config["predictor"], k=config["model"]["k"], tol=solver["tol"],
                                        max_iter=int(solver["max_iter"]), chunk=int(solver["chunk"]))
        if problem.gaussian and int(doc["round"]) == 0 else None,
        "trials": [
            {
                "number": t["number"],
                "params": params[b],
                "loss": float(loss) if np.isfinite(loss) else None,
                "converged": bool(solution.converged[b]),
                "iterations": int(solution.iterations[b]),
                "pieces": int(pieces[b]),
                "warm_from": plan["sources"][b],
            }
            for b, (t, loss) in enumerate(zip(entries, losses))
        ],
    }
    state = {"numbers": np.array([t["number"] for t in entries]), "log_params": _log_params(plan["search"], config), "W": solution.W,
             "data_dual": solution.data_dual, "step": solution.step}
    if solution.gamma is not None:
        state["gamma"] = solution.gamma
    return result, state


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


_NPZ_LOCK = threading.Lock()


def _read_states(path, prefix: str = "") -> dict:
    """The numeric arrays of a fold state file (those whose key starts with ``prefix``, prefix removed)."""
    # one reader at a time: numpy parses .npy headers with ast.literal_eval, and CPython 3.11's parser is not
    # thread-safe ("AST constructor recursion depth mismatch", seen when run_search reads folds in threads)
    with _NPZ_LOCK, np.load(path) as z:  # allow_pickle stays off: states hold numeric arrays only
        return {key[len(prefix):]: z[key] for key in z.files if key.startswith(prefix) and z[key].dtype != object}


def _nearest_warm_start(params: list[dict], stores: Sequence[dict], config: dict) -> tuple[dict, list]:
    """Per trial, the earlier solution on this fold nearest in the search's own scale (ties: lowest number);
    ``stores``: the state dicts this fold wrote in earlier rounds (:func:`_read_states`)."""
    numbers = np.concatenate([s["numbers"] for s in stores])
    points = np.concatenate([s["log_params"] for s in stores])
    order = np.argsort(numbers, kind="stable")
    target = _log_params(params, config)
    dist = ((target[:, None, :] - points[None, order, :]) ** 2).sum(-1)
    pick = order[np.argmin(dist, axis=1)]  # argmin takes the first (lowest number) on ties

    def gather(key, axis):
        if any(key not in s for s in stores):
            return None
        return np.take(np.concatenate([s[key] for s in stores], axis=axis), pick, axis=axis)

    warm = {"W": gather("W", 1), "data_dual": gather("data_dual", 1), "step": gather("step", 0), "gamma": gather("gamma", 0)}
    return warm, [int(numbers[i]) for i in pick]


# -- tell ------------------------------------------------------------------------------------------------
def tell(trials, fold_results: Sequence, out=None) -> dict:
    """Mean and spread of the held-out loss per trial over the folds; a trial failing on any fold fails."""
    doc = trials if isinstance(trials, dict) else _read_json(trials)
    folds = [f if isinstance(f, dict) else _read_json(f) for f in fold_results]
    folds.sort(key=lambda f: f["fold"])
    if len({f["fold"] for f in folds}) != len(folds):
        raise S3RInputError("tell got the same fold twice; pass one fold_{k}.json per fold")
    numbers = [t["number"] for t in doc["trials"]]
    for f in folds:
        if f["round"] != doc["round"] or [t["number"] for t in f["trials"]] != numbers:
            raise S3RInputError(f"fold {f['fold']} results are for other trials than round {doc['round']}'s trials.json; rerun that fold")
    k = len(folds)
    recorded = []
    for b, trial in enumerate(doc["trials"]):
        losses = [f["trials"][b]["loss"] for f in folds]
        ok = all(loss is not None and math.isfinite(loss) for loss in losses)
        values = np.array(losses, dtype=np.float64) if ok else None
        std = float(values.std(ddof=1)) if ok and k > 1 else None
        params = folds[0]["trials"][b].get("params") or trial["params"] if folds else trial["params"]
        recorded.append({
            "number": trial["number"],
            "round": doc["round"],
            "params": params,
            "search": trial.get("search") or {name: params[name] for name in PARAM_NAMES},
            "state": "COMPLETE" if ok else "FAIL",
            "value": float(values.mean()) if ok else None,
            "std": std,
            "se": std / math.sqrt(k) if std is not None else None,
            "fold_losses": losses,
            "converged": [f["trials"][b]["converged"] for f in folds],
            "iterations": [f["trials"][b]["iterations"] for f in folds],
            "pieces": _mean_or_none([f["trials"][b].get("pieces") for f in folds]),
        })
    result = {"format": FORMAT, "round": doc["round"], "folds": [f["fold"] for f in folds], "distributions": doc["distributions"], "trials": recorded}
    null = [f.get("null_loss") for f in folds]
    if folds and all(v is not None and math.isfinite(v) for v in null):
        values = np.array(null, dtype=np.float64)
        result["null"] = {"value": float(values.mean()), "se": float(values.std(ddof=1) / math.sqrt(k)) if k > 1 else None, "fold_losses": null}
    trend = [f.get("trend_losses") for f in folds]
    if folds and all(t is not None for t in trend):
        result["trend"] = _trend_summary(np.array(trend, dtype=np.float64))
    if folds and folds[0].get("scales") is not None:
        result["scales"] = folds[0]["scales"]
    if out is not None:
        write_json(result, out)
    return result


def _trend_summary(losses: np.ndarray) -> dict:
    """(folds, path) held-out losses of the spatial trend → its best point on the path, as the null is recorded."""
    k = losses.shape[0]
    means = losses.mean(axis=0)
    i = int(np.nanargmin(means))
    return {"lambda_relative": list(cv.TREND_LAMBDAS), "values": means.tolist(), "value": float(means[i]),
            "se": float(losses[:, i].std(ddof=1) / math.sqrt(k)) if k > 1 else None, "fold_losses": losses[:, i].tolist()}


def _mean_or_none(values: list) -> float | None:
    return float(np.mean(values)) if values and all(v is not None for v in values) else None


# -- select ----------------------------------------------------------------------------------------------
EDGE = 0.02  # a chosen value within 2 % of a range's end (on the search's scale) sits at its edge
NO_EFFECT = "no spatially varying effect of the features found"


def select(results: Sequence, config: dict, out=None) -> dict:
    """The best trial, or (selection = one_se, the default) the simplest trial within one standard error of it.

    "Simplest" = the smallest map: fewest non-zero constant pieces over all features, averaged over the folds
    (``cv.map_pieces``, the fused lasso's degrees of freedom) — glmnet's lambda.1se, with the model size
    measured on the fitted maps rather than read off one penalty, since three penalties trade off. Ties (and
    results from versions that did not record the size) go to the largest sum of the tuned parameters'
    positions in their ranges, then to the lower trial number, so the choice is deterministic.

    The verdict: the intercept-only (covariates-only) model's held-out loss on the same folds is the yardstick.
    When the best trial does not beat it by more than the standard error of their paired fold differences, the
    output says in words that no effect was found (``effect_found`` false, ``verdict``) rather than handing
    on a map that only looks like a result. A chosen value at the edge of its range is reported in ``warnings``.
    """
    config = resolve_config(config)
    docs = [item if isinstance(item, dict) else _read_json(item) for item in results]
    trials = [t for t in _load_results(docs) if t["state"] == "COMPLETE"]
    if not trials:
        raise S3RInputError("no tuning trial completed on every fold; check the fold logs (solver failures?)")
    best = min(trials, key=lambda t: (t["value"], t["number"]))
    chosen = best
    if config["selection"] == "one_se":
        limit = best["value"] + (best["se"] or 0.0)
        within = [t for t in trials if t["value"] <= limit]
        strength = _log_params([t.get("search") or t["params"] for t in within], config).sum(axis=1)
        size = [t["pieces"] if t.get("pieces") is not None else math.inf for t in within]
        chosen = min(zip(within, strength, size), key=lambda tss: (tss[2], -tss[1], tss[0]["number"]))[0]
    null = next((d["null"] for d in reversed(docs) if d.get("null")), None)
    trend = next((d["trend"] for d in docs if d.get("trend")), None)
    scales = next((d["scales"] for d in reversed(docs) if d.get("scales")), None)
    effect, verdict = _verdict(best, null, config, trend)
    doc = {
        **chosen["params"],
        "smooth": config["model"]["smooth"],
        "selection": config["selection"],
        "trial": chosen["number"],
        "cv_loss": chosen["value"],
        "cv_se": chosen["se"],
        "map_pieces": chosen.get("pieces"),
        "best_trial": best["number"],
        "best_cv_loss": best["value"],
        "null_cv_loss": None if null is None else null["value"],
        "null_cv_se": None if null is None else null["se"],
        "trend_cv_loss": None if trend is None else trend["value"],
        "trend_cv_se": None if trend is None else trend["se"],
        "effect_found": effect,
        "verdict": verdict,
        "search": chosen.get("search"),
        "scales": scales,
        "space": config["space"],
        "warnings": _edge_warnings(chosen, config),
        "n_trials": len(trials),
        "model": config["model"],
    }
    if out is not None:
        from s3r.artifacts import write_params

        write_params(out, {**chosen["params"], "smooth": config["model"]["smooth"]}, source="tune", tuning=doc)
    return doc


def _paired_gain(best: dict, yardstick: dict) -> tuple[float, float]:
    """Mean and standard error of the yardstick's fold losses minus the best trial's (paired on the folds)."""
    diffs = np.array(yardstick["fold_losses"], dtype=np.float64) - np.array(best["fold_losses"], dtype=np.float64)
    se = float(diffs.std(ddof=1) / math.sqrt(diffs.size)) if diffs.size > 1 else 0.0
    return float(diffs.mean()), se


def _verdict(best: dict, null: dict | None, config: dict, trend: dict | None = None) -> tuple[bool | None, str]:
    """Effect found only when the best trial beats every yardstick by more than its paired standard error: the
    intercept-only model and (gaussian) the spatial trend without features, so that a target's own spatial
    pattern is not reported as an effect of whichever features happen to be expressed there."""
    if null is None:
        return None, "no intercept-only comparison was recorded (tuning files from an earlier version)"
    what = "intercept-only" if config["model"].get("fit_intercept") is not False else "all-zero"
    gain, se = _paired_gain(best, null)
    if not (gain > se and gain > 0):
        return False, (f"{NO_EFFECT}: no trial beats the {what} model by more than its standard error "
                       f"(best held-out loss {best['value']:.4g}, {what} {null['value']:.4g}, difference {gain:.3g} ± {se:.2g} SE)")
    if trend is not None:
        t_gain, t_se = _paired_gain(best, trend)
        if not (t_gain > t_se and t_gain > 0):
            return False, (f"{NO_EFFECT} beyond the target's own spatial pattern: a smooth map of the target without features "
                           f"predicts held-out spots as well (best held-out loss {best['value']:.4g}, spatial trend alone "
                           f"{trend['value']:.4g}, {what} {null['value']:.4g}; difference to the trend {t_gain:.3g} ± {t_se:.2g} SE); "
                           f"the maps show where features and target share a pattern, not an effect that location does not explain")
        return True, (f"the features explain the target beyond the {what} model and beyond a smooth spatial trend: held-out loss "
                      f"{best['value']:.4g} against {null['value']:.4g} ({what}) and {trend['value']:.4g} (trend alone); "
                      f"paired fold differences {gain:.3g} ± {se:.2g} and {t_gain:.3g} ± {t_se:.2g} SE")
    rel = gain / null["value"] if null["value"] else 0.0
    return True, (f"the features explain the target beyond the {what} model: held-out loss {best['value']:.4g} against "
                  f"{null['value']:.4g} ({100 * rel:.1f} % lower; paired fold difference {gain:.3g} ± {se:.2g} SE)")


def _edge_warnings(trial: dict, config: dict) -> list[str]:
    point = trial.get("search") or trial["params"]
    out = []
    for name, spec in config["space"].items():
        if not isinstance(spec, dict):
            continue
        pos = _log_params([point], {"space": {name: spec}})[0, 0]
        if pos <= EDGE or pos >= 1 - EDGE:
            end = "low" if pos <= EDGE else "high"
            kind = "relative to its natural scale " if spec["relative"] else ""
            out.append(f"{name} = {point[name]:.3g} {kind}sits at the {end} end of its search range "
                       f"[{spec['low']:.3g}, {spec['high']:.3g}]; the optimum may lie beyond it: widen that range")
    return out


# -- outputs ---------------------------------------------------------------------------------------------
def write_tables(results: Sequence, out_dir) -> tuple[Path, Path]:
    """trials.tsv (one row per trial) and fold_scores.tsv (one row per trial and fold)."""
    trials = _load_results(results)
    out_dir = Path(out_dir)
    rows, fold_rows = [], []
    for t in trials:
        rows.append({
            "number": t["number"], "round": t["round"], **t["params"], **{f"{k}_search": v for k, v in (t.get("search") or {}).items()},
            "state": t["state"], "cv_loss": t["value"],
            "cv_std": t["std"], "cv_se": t["se"], "all_converged": all(t["converged"]), "max_iterations": max(t["iterations"]),
            "map_pieces": t.get("pieces"),
        })
        for fold, loss, conv, its in zip(range(len(t["fold_losses"])), t["fold_losses"], t["converged"], t["iterations"]):
            fold_rows.append({"number": t["number"], "fold": fold, "loss": loss, "converged": conv, "iterations": its})
    write_csv(pd.DataFrame(rows), out_dir / "trials.tsv", sep="\t", index=False)
    write_csv(pd.DataFrame(fold_rows), out_dir / "fold_scores.tsv", sep="\t", index=False)
    return out_dir / "trials.tsv", out_dir / "fold_scores.tsv"


def export_study(results: Sequence, config: dict, path, study_name: str = "s3r-tune") -> Path:
    """Write the whole study once to an Optuna journal file (``optuna-dashboard PATH`` opens it).

    Written by one process at the end into a temporary file that replaces ``path``, so no job ever shares
    a journal (journal files get corrupted on network filesystems under concurrent appends).
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    config = resolve_config(config)
    trials = _load_results(results)
    distributions = _distributions(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(path)
    with atomic_path(path) as tmp:
        storage = JournalStorage(JournalFileBackend(str(tmp), lock_obj=JournalFileOpenLock(str(tmp))))
        study = optuna.create_study(storage=storage, study_name=study_name, direction="minimize")
        for key in ("seed", "fold_scheme", "folds", "selection", "predictor"):
            study.set_user_attr(key, config[key])
        study.set_user_attr("model", config["model"])
        for trial in trials:
            study.add_trial(_frozen(trial, distributions))
    lock = Path(str(tmp) + ".lock")
    if lock.exists():
        lock.unlink()
    return path


# -- the whole search in one process ---------------------------------------------------------------------
def default_workers(config: dict) -> int:
    """Folds solved at once: one per CPU core on a CPU (each single-threaded), one on a GPU."""
    from s3r.solver import resolve_device

    if resolve_device(config["solver"]["device"]).type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(config["folds"], cores))


def run_search(data: RegressionData, config: dict | None, out_dir, *, workers: int | None = None, keep_states: bool = False,
               progress: Callable[[str], None] | None = None, offset=None) -> dict:
    """All rounds with the very functions (and files) the workflow runs as separate jobs.

    Folds of a round run in ``workers`` threads. On a CPU each fold is solved single-threaded: these
    problems are too small for torch's intra-op threads to pay off, and on a shared machine spinning
    threads cost more than they give; one fold per core keeps every core busy instead. Results do not
    depend on ``workers``. The warm-start states (round_*/fold_*.npz, ~1 MB per trial and fold at 1,000 × 100)
    are deleted at the end unless ``keep_states``.
    """
    import torch
    from concurrent.futures import ThreadPoolExecutor

    config = resolve_config(config)
    workers = default_workers(config) if workers is None else max(1, int(workers))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(config, out_dir / "config.json")
    start = time.perf_counter()
    problem = make_problem(data, config, offset)
    folds = make_folds(problem.coords, config)
    scales = problem.natural_scales() if _relative(config) else None
    write_csv(pd.DataFrame({"spot": data.spot_ids, "fold": folds}), out_dir / "folds.tsv", sep="\t", index=False)
    saved_threads = torch.get_num_threads()
    if problem.device.type == "cpu":
        torch.set_num_threads(1)
    results = []
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for r in range(config["rounds"]):
                rd = round_dir(out_dir, r)
                trials = suggest(config, results, rd / "trials.json")

                def run_fold(k, rd=rd, trials=trials, r=r):
                    warm = [round_dir(out_dir, q) / f"fold_{k}.npz" for q in range(r)]
                    evaluate_fold(None, config, trials, k, rd / f"fold_{k}.json", warm_from=warm, problem=problem, scales=scales)
                    return rd / f"fold_{k}.json"

                fold_files = []
                for k, path in enumerate(pool.map(run_fold, range(config["folds"]))):
                    fold_files.append(path)
                    if progress:
                        progress(f"round {r + 1}/{config['rounds']}, fold {k + 1}/{config['folds']} done ({time.perf_counter() - start:.1f} s)")
                results.append(rd / "results.json")
                tell(trials, fold_files, results[-1])
    finally:
        torch.set_num_threads(saved_threads)
    best = select(results, config, out_dir / "best_params.json")
    write_tables(results, out_dir)
    export_study(results, config, out_dir / "study.journal")
    if not keep_states:
        for state in out_dir.glob("round_*/fold_*.npz"):
            state.unlink()
    best["seconds"] = time.perf_counter() - start
    return best
