"""Model forms as a tuning choice: the smoothness mode, the spatial intercept and the graph's neighbourhood (kNN k)
chosen by held-out loss.

Which form fits is a property of the data, not of the field: tissue domains are piecewise constant (tv), a
county-level social gradient is smooth (quadratic, every coefficient and the intercept varying; GWR's model), and
how far a coefficient borrows strength is GWR's bandwidth — on Georgia the best fixed penalties improve from
0.697 to 0.681 RMSE as k grows from 7 to 25 (benchmarks/README.md, session 11).
``model.smooth``, ``model.spatial_intercept`` and ``model.k`` may therefore be lists; ``run_search`` then searches every
combination in full (the same seeded first round on the same folds) and keeps the form whose best trial has the
lowest held-out loss, so the search costs one search per form. Ties go to the first listed form. Only the full
search is a fair comparison: a form's first round (a few space-filling points) can miss its good region, e.g.
tv on piecewise-constant truth with four points (measured; tests/tuning/test_variants.py).
"""

from __future__ import annotations

import itertools
import math
from numbers import Integral

from s3r.errors import S3RInputError
from s3r.validation import SMOOTH_MODES

CHOICE_KEYS = ("smooth", "spatial_intercept", "k")


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_choices(model: dict) -> None:
    """A list of forms must be non-empty, without repeats, of valid values."""
    for key, valid in (("smooth", SMOOTH_MODES), ("spatial_intercept", (False, True, None))):
        values = _as_list(model[key])
        if not values or len(set(values)) != len(values):
            raise S3RInputError(f"tuning model.{key} must be one value or a non-empty list without repeats; got {model[key]!r}")
        bad = [v for v in values if v not in valid or (key == "spatial_intercept" and v is not None and not isinstance(v, bool))]
        if bad:
            raise S3RInputError(f"tuning model.{key} must be one of {', '.join(map(str, valid))} (or a list of them); got {bad[0]!r}")
    ks = _as_list(model["k"])
    if not ks or len(set(ks)) != len(ks) or any(k is not None and (isinstance(k, bool) or not isinstance(k, Integral) or k < 1) for k in ks):
        raise S3RInputError(f"tuning model.k must be a whole number ≥ 1 or a non-empty list of them without repeats; got {model['k']!r}")


def is_choice(config: dict) -> bool:
    return any(isinstance(config["model"][key], (list, tuple)) and len(config["model"][key]) > 1 for key in CHOICE_KEYS)


def model_variants(config: dict) -> list[tuple[str, dict]]:
    """(label, config with one form) for every combination, in listed order (the first is the tie-break)."""
    out = []
    several_k = len(_as_list(config["model"]["k"])) > 1
    for smooth, si, k in itertools.product(*(_as_list(config["model"][key]) for key in CHOICE_KEYS)):
        label = f"{smooth}{'+spatial_intercept' if si else ''}{f'+k{k}' if several_k else ''}"
        out.append((label, {**config, "model": {**config["model"], "smooth": smooth, "spatial_intercept": si, "k": k}}))
    return out


def single_form(config: dict) -> dict:
    """A config with a one-element list unwrapped; a real choice is an error here (only run_search screens)."""
    if is_choice(config):
        raise S3RInputError("model.smooth / model.spatial_intercept / model.k list several forms: only run_search chooses among them; "
                            "the step-by-step API (suggest, evaluate_fold, tell) needs one form")
    model = {**config["model"], **{key: _as_list(config["model"][key])[0] for key in CHOICE_KEYS}}
    return {**config, "model": model}


def pick_variant(searches: dict) -> tuple[str, dict]:
    """The form whose best trial (over its results docs) has the lowest mean held-out loss (first listed on a tie)."""
    best = {}
    for label, docs in searches.items():
        values = [t["value"] for doc in docs for t in doc["trials"] if t["state"] == "COMPLETE" and t["value"] is not None]
        best[label] = min(values) if values else math.inf
    if all(math.isinf(v) for v in best.values()):
        raise S3RInputError("no trial completed for any model form; check the fold logs (solver failures?)")
    chosen = min(best, key=lambda label: (best[label], list(best).index(label)))
    return chosen, {"chosen": chosen, "best_cv_loss": best, "rule": "lowest best held-out loss, each form searched in full"}
