"""Choosing the parameters from all rounds (best or one standard error) and the verdict on whether any effect was found."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from s3r.errors import S3RInputError
from s3r.tune.files import _load_results, read_json
from s3r.tune.space import _log_params, resolve_config
from s3r.tune.window import window_note


EDGE = 0.02  # a chosen value within 2 % of a range's end (on the search's scale) sits at its edge
NO_EFFECT = "no spatially varying effect of the features found"


def select(results: Sequence, config: dict, out=None) -> dict:
    """The best trial, or (selection = one_se, the default) the simplest trial within one standard error of it.

    "Simplest" = the smallest map: fewest non-zero constant pieces over all features, averaged over the folds
    (``cv.map_pieces``, the fused lasso's degrees of freedom) — glmnet's lambda.1se, with the model size
    measured on the fitted maps rather than read off one penalty, since three penalties trade off. Ties (and
    results from versions that did not record the size) go to the largest sum of the tuned parameters'
    positions in their ranges, then to the lower trial number, so the choice is deterministic. ``one_se_features``
    measures the size by the number of features the maps use instead (pieces break its ties).

    The verdict: the intercept-only (covariates-only) model's held-out loss on the same folds is the yardstick.
    When the chosen trial -- the one whose map is handed on -- does not beat it by more than the standard error of
    their paired fold differences, the output says in words that no effect was found (``effect_found`` false,
    ``verdict``) rather than handing on a map that only looks like a result. Judging the best trial instead would
    call an effect on a map that is not the one shown (a one-SE choice can be worse than the yardstick while the
    best trial beats it by a hair). A chosen value at the edge of its range is reported in ``warnings``. A search on a
    window of a large section (``window`` in the results, :mod:`s3r.tune.window`) says so beside the choice and in
    the verdict.
    """
    config = resolve_config(config)
    docs = [item if isinstance(item, dict) else read_json(item) for item in results]
    trials = [t for t in _load_results(docs) if t["state"] == "COMPLETE"]
    if not trials:
        raise S3RInputError("no tuning trial completed on every fold; check the fold logs (solver failures?)")
    best = min(trials, key=lambda t: (t["value"], t["number"]))
    chosen = best
    if config["selection"] in ("one_se", "one_se_features"):
        limit = best["value"] + (best["se"] or 0.0)
        within = [t for t in trials if t["value"] <= limit]
        chosen = min(zip(within, _size_keys(within, config)), key=lambda tk: (*tk[1], tk[0]["number"]))[0]
    null, trend, stopped = yardsticks(docs)
    scales = next((d["scales"] for d in reversed(docs) if d.get("scales")), None)
    window = next((d["window"] for d in docs if d.get("window")), None)
    effect, verdict = _verdict(chosen, null, config, trend, best=best)
    if stopped:  # said beside the verdict, so "no effect" after one round is not read as a full search's
        verdict = f"{verdict}; {stopped}"
    verdict += window_note(window)
    doc = {
        **chosen["params"],
        "smooth": config["model"]["smooth"],
        "selection": config["selection"],
        "trial": chosen["number"],
        "cv_loss": chosen["value"],
        "cv_se": chosen["se"],
        "map_pieces": chosen.get("pieces"),
        "map_features": chosen.get("features"),
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
        "search_stopped": stopped,
        "window": window,
        "model": config["model"],
    }
    if out is not None:
        from s3r.artifacts import write_params

        write_params(out, {**chosen["params"], "smooth": config["model"]["smooth"]}, source="tune", tuning=doc)
    return doc


def yardsticks(docs: Sequence[dict]) -> tuple[dict | None, dict | None, str | None]:
    """From a target's results.json documents: the intercept-only model's record (the latest round's), the spatial
    trend's (round 0's) and why the search stopped early, if it did — what the verdict and the early stop judge by."""
    null = next((d["null"] for d in reversed(docs) if d.get("null")), None)
    trend = next((d["trend"] for d in docs if d.get("trend")), None)
    stopped = next((d["stopped"] for d in docs if d.get("stopped")), None)
    return null, trend, stopped


def _size_keys(trials: list[dict], config: dict) -> list[tuple]:
    """Per trial, the sort key of its size (smallest first) under the configured one-SE rule.

    ``one_se``: map pieces, then the largest sum of the tuned parameters' positions. ``one_se_features``: the
    number of features the maps use (the group lasso's support, averaged over the folds), then pieces, then the
    positions — among equally good trials the one with fewest features, for p > n data where pieces reward a
    coarsely cut dense map (benchmarks/README.md, sessions 11–12). A size not recorded (older files) counts as
    infinite, so such a trial is chosen only when no recorded one is within reach.
    """
    strength = _log_params([t.get("search") or t["params"] for t in trials], config).sum(axis=1)

    def size(t, key):
        return t[key] if t.get(key) is not None else math.inf

    if config["selection"] == "one_se_features":
        return [(size(t, "features"), size(t, "pieces"), -s) for t, s in zip(trials, strength)]
    return [(size(t, "pieces"), -s) for t, s in zip(trials, strength)]


def paired_gain(best: dict, yardstick: dict) -> tuple[float, float]:
    """Mean and standard error of the yardstick's fold losses minus the best trial's (paired on the folds)."""
    diffs = np.array(yardstick["fold_losses"], dtype=np.float64) - np.array(best["fold_losses"], dtype=np.float64)
    se = float(diffs.std(ddof=1) / math.sqrt(diffs.size)) if diffs.size > 1 else 0.0
    return float(diffs.mean()), se


def _verdict(chosen: dict, null: dict | None, config: dict, trend: dict | None = None,
             best: dict | None = None) -> tuple[bool | None, str]:
    """Effect found only when the chosen trial beats every yardstick by more than its paired standard error: the
    intercept-only model and the spatial trend without features (any family), so that a target's own spatial
    pattern is not reported as an effect of whichever features happen to be expressed there."""
    if null is None:
        return None, "no intercept-only comparison was recorded (tuning files from an earlier version)"
    what = "intercept-only" if config["model"].get("fit_intercept") is not False else "all-zero"
    gain, se = paired_gain(chosen, null)
    if not (gain > se and gain > 0):
        return False, (f"{NO_EFFECT}: the chosen trial does not beat the {what} model by more than its standard error "
                       f"(chosen held-out loss {chosen['value']:.4g}, {what} {null['value']:.4g}, difference {gain:.3g} ± {se:.2g} SE"
                       f"{_best_aside(best, chosen, null)})")
    if trend is not None:
        t_gain, t_se = paired_gain(chosen, trend)
        if not (t_gain > t_se and t_gain > 0):
            return False, (f"{NO_EFFECT} beyond the target's own spatial pattern: a smooth map of the target without features "
                           f"predicts held-out spots as well (chosen held-out loss {chosen['value']:.4g}, spatial trend alone "
                           f"{trend['value']:.4g}, {what} {null['value']:.4g}; difference to the trend {t_gain:.3g} ± {t_se:.2g} SE); "
                           f"the maps show where features and target share a pattern, not an effect that location does not explain")
        return True, (f"the features explain the target beyond the {what} model and beyond a smooth spatial trend: held-out loss "
                      f"{chosen['value']:.4g} against {null['value']:.4g} ({what}, {_percent(gain, null)} lower) and "
                      f"{trend['value']:.4g} (trend alone, {_percent(t_gain, trend)} lower); paired fold differences "
                      f"{gain:.3g} ± {se:.2g} and {t_gain:.3g} ± {t_se:.2g} SE{_size_note(gain, null)}")
    return True, (f"the features explain the target beyond the {what} model: held-out loss {chosen['value']:.4g} against "
                  f"{null['value']:.4g} ({_percent(gain, null)} lower; paired fold difference {gain:.3g} ± {se:.2g} SE)"
                  f"{_size_note(gain, null)}")


SMALL_EFFECT = 0.01  # below this share of the intercept-only held-out loss an effect is reported as small in words


def _percent(gain: float, yardstick: dict) -> str:
    return f"{100 * gain / yardstick['value']:.2g} %" if yardstick["value"] else "n/a"


def _size_note(gain: float, null: dict) -> str:
    """A detectable effect can still be tiny (DLPFC RILPL2: 0.02 % of the held-out loss): say so beside the test."""
    if null["value"] and gain / null["value"] < SMALL_EFFECT:
        return (f"; a small effect: the features lower the held-out loss by under {100 * SMALL_EFFECT:.0f} % of the "
                f"intercept-only model's, detectable on these folds but not a large share of the target's variation")
    return ""


def _best_aside(best: dict | None, chosen: dict, null: dict) -> str:
    """Where the best trial differs from the chosen one, its own comparison, so a near-miss is visible."""
    if best is None or best["number"] == chosen["number"]:
        return ""
    gain, se = paired_gain(best, null)
    return f"; the best trial, {best['value']:.4g}, differs by {gain:.3g} ± {se:.2g} SE but is not the one reported"


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
