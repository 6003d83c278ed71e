"""A round's work: every trial's held-out loss on one fold (evaluate), then their mean and spread over the folds (tell)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from s3r import cv
from s3r.errors import S3RInputError
from s3r.io import RegressionData, write_json
from s3r.tune.files import _nearest_warm_start, read_fold_state, read_json, write_fold_states
from s3r.tune.space import FORMAT, PARAM_NAMES, _log_params, _relative, absolute_params, resolve_config


def make_problem(data: RegressionData, config: dict, offset=None, graph=None) -> cv.CVProblem:
    """``offset`` (n,): log library size or another fixed part of log μ for the count families; ``graph``: a
    spot graph already built for these spots (the workflow's graph file), else built from the model settings."""
    from s3r.problem import assemble

    from s3r.tune.variants import single_form

    config = single_form(resolve_config(config))
    return assemble(data.X, data.y, data.coords, model=config["model"], covariates=data.covariates, offset=offset, graph=graph,
                    dtype=config["solver"]["dtype"], device=config["solver"]["device"])


def make_folds(coords, config: dict) -> np.ndarray:
    config = resolve_config(config)
    return cv.make_folds(coords, config["folds"], config["fold_scheme"], seed=config["seed"], blocks_per_fold=config["blocks_per_fold"])


def evaluate_fold(data, config: dict, trials, fold: int, out=None, *, warm_from: Sequence = (), state_out=None, problem: cv.CVProblem | None = None,
                  offset=None, scales: dict | None = None, window: dict | None = None) -> dict:
    """Held-out loss of every trial in a round on one fold, solved as one batch.

    ``data`` is a RegressionData (or pass a prebuilt ``problem``); ``trials`` a trials.json (path or dict);
    ``warm_from`` the state files (fold_{k}.npz) this fold wrote in earlier rounds: each trial starts from the
    earlier solution nearest to it in log-parameter space, which is deterministic and involves no other job.
    The solutions go to ``state_out`` (default: ``out`` with suffix .npz) for the next rounds. ``window``: the record of
    the window of a large section that ``data`` is (:func:`s3r.tune.window.window_record`), carried into the results.
    """
    config = resolve_config(config)
    if problem is None:
        problem = make_problem(data, config, offset)
    doc = trials if isinstance(trials, dict) else read_json(trials)
    stores = [read_fold_state(path) for path in warm_from] if doc["trials"] else []  # a stopped search starts nothing
    result, states = evaluate_fold_targets({"": problem}, config, {"": doc}, fold, warm={"": stores}, scales={"": scales}, window=window)
    if out is not None or state_out is not None:
        write_fold_states(Path(state_out) if state_out is not None else Path(out).with_suffix(".npz"), {"": states[""]})
    if out is not None:
        write_json(result[""], out)
    return result[""]


def evaluate_fold_targets(problems: dict, config: dict, trials: dict, fold: int, *, warm: dict | None = None,
                          scales: dict | None = None, window: dict | None = None) -> tuple[dict, dict]:
    """:func:`evaluate_fold` for several targets of one sample in one batched solve (``cv.solve_fold_targets``).

    Every mapping is keyed by target: ``problems`` (sharing the design), ``trials`` (each target's own study's
    trials.json doc), ``warm`` (each target's earlier state dicts on this fold, as :func:`read_fold_state` gives),
    ``scales`` (natural scales, computed when missing); ``window`` the record of the window the problems are on, if any.
    Returns (fold results, state arrays) by target; the
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
        problem, doc = problems[name], trials[name] if isinstance(trials[name], dict) else read_json(trials[name])
        scale = (scales or {}).get(name)
        if scale is None and _relative(config):  # deterministic from the data: every fold job computes the same
            scale = problem.natural_scales()
        entries = doc["trials"]
        search = [t.get("search") or t["params"] for t in entries]
        params = [absolute_params(config, t.get("search", t.get("params", {})), scale) for t in entries]
        start, sources = None, [None] * len(entries)
        stores = (warm or {}).get(name) or []
        if solver["warm_start"] and stores and entries:  # a stopped target has no trials to start
            start, sources = _nearest_warm_start(search, stores, config)
            expected = (problem.n_spots, problem.X.shape[1])
            if (start["W"].shape[0], start["W"].shape[2]) != expected:
                raise S3RInputError(f"warm-start states of target {name!r} are for another problem ({start['W'].shape[0]} × "
                                    f"{start['W'].shape[2]}, not {expected[0]} × {expected[1]}); delete them and rerun")
        plans[name] = {"doc": doc, "search": search, "params": params, "warm": start, "sources": sources, "scales": scale, "window": window,
                       "continued": np.zeros(len(params), dtype=bool), "losses": None}
    live = [name for name in names if plans[name]["params"]]  # a target whose search stopped early has no trials

    def solve(group):
        with _naming(group):
            return cv.solve_fold_targets(
                [problems[name] for name in group], [plans[name]["params"] for name in group], folds, fold, tol=solver["tol"],
                max_iter=int(solver["max_iter"]), chunk=int(solver["chunk"]), warm=[plans[name]["warm"] for name in group],
                batch=int(solver["batch"]),
            )

    # the squared loss solves a chunk's targets together; a count family solves them one by one anyway, and one at a time
    # here a failure can name its target
    together = live and problems[live[0]].gaussian
    solutions = solve(live) if together else [sol for name in live for sol in solve([name])]
    solved = dict(zip(live, solutions))
    for name in live:
        with _naming([name]):
            solved[name], plans[name]["continued"], plans[name]["losses"] = continue_contenders(
                problems[name], plans[name]["params"], solved[name], folds, fold, config)
    results, states = {}, {}
    for name in names:
        with _naming([name]):
            results[name], states[name] = _fold_record(problems[name], config, plans[name], solved.get(name), folds, fold)
    return results, states


# a trial that stopped at the cap with a held-out loss within this share of the fold's best is a contender for the best
CONTEND_MARGIN = 0.05


def continue_contenders(problem, params: list[dict], solution, folds, fold: int, config: dict):
    """The fold's leading trials solved on, where they stopped at the iteration cap, so the ranking's head is converged.

    The cap (``solver.max_iter``) is a cheap first look at every trial; a capped solve is another model than the one its
    λ, α, β define — held to the few features its working set had reached, not yet fused. On DLPFC with the 2,000 most
    variable genes as features, 8 of 10 first-round trials stopped at 500 iterations, and the fold's best by a capped
    loss (0.685, 128 of its eventual 1,916 features) scored 1.054 when solved on, while the trial ranked sixth (0.931)
    converged at 0.632 — the best (benchmarks/README.md, session 35). So, as a multi-fidelity search does, a capped trial
    within ``CONTEND_MARGIN`` of the fold's best loss is solved on from where it stopped, to ``solver.contend_max_iter``
    iterations; the margin is measured again after each pass, and every trial is continued at most once.
    Returns the solution with the continued trials' states spliced in, which were continued, and the trials' held-out
    losses where they were computed here (else None; the fold record computes them once either way)."""
    solver = config["solver"]
    B = solution.W.shape[1]
    continued = np.zeros(B, dtype=bool)
    budget = int(solver["contend_max_iter"]) - int(solver["max_iter"])
    if budget <= 0 or B == 0:
        return solution, continued, None
    losses = cv.fold_losses(problem, solution, folds, fold, config["predictor"], k=config["model"]["k"])
    while True:
        finite = np.isfinite(losses)
        if not finite.any():
            break
        best = float(np.min(losses[finite]))
        pick = np.flatnonzero(finite & ~solution.converged & ~continued & (losses <= best + CONTEND_MARGIN * abs(best)))
        if pick.size == 0:
            break
        warm = {"W": solution.W[:, pick], "data_dual": solution.data_dual[:, pick], "step": solution.step[pick]}
        if solution.gamma is not None:
            warm["gamma"] = solution.gamma[pick]
        more = cv.solve_fold(problem, [params[b] for b in pick], folds, fold, tol=solver["tol"], max_iter=budget,
                             chunk=int(solver["chunk"]), warm=warm, batch=int(solver["batch"]))
        solution.W[:, pick], solution.data_dual[:, pick], solution.step[pick] = more.W, more.data_dual, more.step
        if solution.gamma is not None:
            solution.gamma[pick] = more.gamma
        solution.converged[pick] = more.converged
        solution.iterations[pick] += more.iterations
        solution.seconds += more.seconds
        continued[pick] = True
        losses[pick] = cv.fold_losses(problem, more, folds, fold, config["predictor"], k=config["model"]["k"])
    return solution, continued, losses


class FoldTargetError(RuntimeError):
    """A failure inside a fold's solve or scoring, with the target(s) it came from."""


@contextmanager
def _naming(targets: list[str]):
    """Re-raise an unexpected error with the target(s) it came from: a fold job of a chunk holds many targets, and
    its one-line message (sample, chunk, round, fold) should say which (issue 17)."""
    try:
        yield
    except (S3RInputError, FoldTargetError):
        raise
    except Exception as err:
        which = f"target {targets[0]}" if len(targets) == 1 else f"targets {', '.join(targets)} (solved together)"
        raise FoldTargetError(f"{which}: {type(err).__name__}: {err}") from err


def _fold_record(problem, config: dict, plan: dict, solution, folds, fold: int) -> tuple[dict, dict]:
    """One target's fold result (losses, convergence, map sizes, the null model) and its warm-start state."""
    doc, params, entries, solver = plan["doc"], plan["params"], plan["doc"]["trials"], config["solver"]
    if solution is None:  # no trials: the yardsticks only
        solution = cv.FoldSolution.empty(problem.n_spots, problem.X.shape[1])
        losses = pieces = features = []
    else:
        losses = plan.get("losses")
        if losses is None:
            losses = cv.fold_losses(problem, solution, folds, fold, config["predictor"], k=config["model"]["k"])
        pieces = cv.map_pieces(problem, solution.W)
        features = cv.map_features(solution.W)
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
        "window": plan["window"],
        "null_loss": cv.null_loss(problem, folds, fold),
        # the trend yardstick once per tuning (round 0): it does not depend on the trials
        "trend_losses": cv.trend_losses(problem, folds, fold, config["predictor"], k=config["model"]["k"], tol=solver["tol"],
                                        max_iter=int(solver["max_iter"]), chunk=int(solver["chunk"]))
        if int(doc["round"]) == 0 else None,
        "trials": [
            {
                "number": t["number"],
                "params": params[b],
                "loss": float(loss) if np.isfinite(loss) else None,
                "converged": bool(solution.converged[b]),
                "iterations": int(solution.iterations[b]),
                "pieces": int(pieces[b]),
                "features": int(features[b]),
                "warm_from": plan["sources"][b],
                "continued": bool(plan["continued"][b]),
            }
            for b, (t, loss) in enumerate(zip(entries, losses))
        ],
    }
    state = {"numbers": np.array([t["number"] for t in entries], dtype=np.int64), "log_params": _log_params(plan["search"], config), "W": solution.W,
             "data_dual": solution.data_dual, "step": solution.step}
    if solution.gamma is not None:
        state["gamma"] = solution.gamma
    return result, state


# -- tell ------------------------------------------------------------------------------------------------
def tell(trials, fold_results: Sequence, out=None) -> dict:
    """Mean and spread of the held-out loss per trial over the folds; a trial failing on any fold fails."""
    doc = trials if isinstance(trials, dict) else read_json(trials)
    folds = [f if isinstance(f, dict) else read_json(f) for f in fold_results]
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
            "features": _mean_or_none([f["trials"][b].get("features") for f in folds]),
        })
    result = {"format": FORMAT, "round": doc["round"], "folds": [f["fold"] for f in folds], "distributions": doc["distributions"], "trials": recorded}
    if doc.get("stopped"):
        result["stopped"] = doc["stopped"]
    null = [f.get("null_loss") for f in folds]
    if folds and all(v is not None and math.isfinite(v) for v in null):
        values = np.array(null, dtype=np.float64)
        result["null"] = {"value": float(values.mean()), "se": float(values.std(ddof=1) / math.sqrt(k)) if k > 1 else None, "fold_losses": null}
    trend = [f.get("trend_losses") for f in folds]
    if folds and all(t is not None for t in trend):
        result["trend"] = _trend_summary(np.array(trend, dtype=np.float64))
    if folds and folds[0].get("scales") is not None:
        result["scales"] = folds[0]["scales"]
    if folds and folds[0].get("window"):
        result["window"] = folds[0]["window"]
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
