"""The batch summary: one row per (sample, target) across the whole run.

Answers "did every fit work, and with what?" at a glance: the size of the problem, the graph, the chosen
parameters and where they came from, the cross-validation loss of the chosen trial (when tuned), how many
features were selected (and the strongest ones), and the solver's runtime, iterations and convergence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.artifacts import read_params_file
from s3r.errors import S3RInputError

__all__ = ["summarise_fits", "COLUMNS"]

COLUMNS = [
    "sample", "target", "n_spots", "n_features", "graph", "n_edges", "graph_components", "smooth",
    "lambda_smooth", "alpha", "beta", "params_source", "cv_loss", "cv_se", "null_cv_loss", "trend_cv_loss", "trial", "n_trials",
    "effect_found", "verdict", "selected_features", "top_features", "nonzero_fraction", "r2", "objective", "converged", "iterations",
    "solve_seconds", "device",
]
TOP_FEATURES = 5


def _load(path, what: str) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise S3RInputError(f"{path}: {what} not found") from None
    except json.JSONDecodeError as err:
        raise S3RInputError(f"{path}: {what} is not valid JSON (line {err.lineno}): {err.msg}; rerun the job that wrote it") from None


def _top_features(npz: Path) -> str:
    """The strongest selected features by coefficient norm over spots, strongest first (ties by name)."""
    if not npz.is_file():
        return ""
    with np.load(npz, allow_pickle=False) as f:
        W, names = f["coef"], [str(n) for n in f["feature_names"]]
    norms = np.linalg.norm(W, axis=0)
    order = sorted((j for j in range(len(names)) if norms[j] > 0), key=lambda j: (-norms[j], names[j]))
    return ",".join(names[j] for j in order[:TOP_FEATURES])


def _tuning(doc: dict) -> dict:
    """CV loss and trial of the chosen parameters (the parameter file's "tuning"); parameters from config carry none."""
    tuned = doc["tuning"] or {}
    return {key: tuned.get(key) for key in TUNING_KEYS}


def _params_path(by_pair: Mapping, sample, target, fit_path):
    """The parameter file of this fit's (sample, target), from the workflow's explicit pairing."""
    for (s, t), params_path in by_pair.items():
        if (str(s), str(t)) == (str(sample), str(target)):
            return params_path
    raise S3RInputError(f"{fit_path}: no parameter file for sample {sample!r}, target {target!r}; pass one per fit")


# the verdict says in words whether the features beat the intercept-only model and the spatial trend in cross-validation
TUNING_KEYS = ("cv_loss", "cv_se", "null_cv_loss", "trend_cv_loss", "trial", "n_trials", "effect_found", "verdict")


def _graph_name(method, lattice) -> str | None:
    """"knn (hexagonal, 6 neighbours)" where kNN joined a lattice's whole shells, else the method as configured."""
    return f"{method} ({lattice})" if method and lattice else method


def summarise_fits(fit_jsons: Sequence, graph_jsons: Sequence = (), params_jsons: Sequence = ()) -> pd.DataFrame:
    """One row per fit (``fit.json`` files), sorted by sample and target, columns :data:`COLUMNS`.

    ``graph_jsons``: the graph summaries (``results/graphs/<sample>.json``), matched by sample.
    ``params_jsons``: the ``best_params.json`` each fit used: a mapping ``{(sample, target): path}`` (the
    workflow's explicit pairing), or a sequence in the same order as ``fit_jsons``; a file that names its
    sample and target must name the fit's.
    """
    by_pair = isinstance(params_jsons, Mapping)
    if params_jsons and not by_pair and len(params_jsons) != len(fit_jsons):
        raise S3RInputError(
            f"{len(params_jsons)} parameter files for {len(fit_jsons)} fits; pass one best_params.json per fit.json, in the same order"
        )
    graphs = {}
    for path in graph_jsons:
        g = _load(path, "graph summary")
        graphs[g.get("sample")] = g
    rows = []
    for i, path in enumerate(fit_jsons):
        fit = _load(path, "fit report")
        extra, params = fit.get("extra", {}) or {}, fit.get("parameters", {}) or {}
        sample, target = extra.get("sample"), fit.get("target")
        tuning = dict.fromkeys(TUNING_KEYS)
        tuning.update({key: extra[key] for key in ("effect_found", "verdict", "null_cv_loss", "trend_cv_loss", "cv_loss") if key in extra})
        source = extra.get("params_source")
        if params_jsons:
            params_path = _params_path(params_jsons, sample, target, path) if by_pair else params_jsons[i]
            doc = read_params_file(params_path)
            for key, mine in (("sample", sample), ("target", target)):
                if doc[key] is not None and mine is not None and str(doc[key]) != str(mine):
                    raise S3RInputError(
                        f"{params_path}: parameters for {key} {doc[key]!r}, but {path} is {key} {mine!r}; "
                        "pass the files in the same order"
                    )
            tuning = _tuning(doc)
            source = source or doc.get("source") or ("tune" if tuning["cv_loss"] is not None else None)
        graph = graphs.get(sample, {})
        rows.append(
            {
                "sample": sample,
                "target": target,
                "n_spots": fit.get("n_spots"),
                "n_features": fit.get("n_features"),
                "graph": _graph_name(params.get("graph"), graph.get("lattice") or fit.get("lattice")),
                "n_edges": graph.get("n_edges", fit.get("n_edges")),
                "graph_components": graph.get("n_components"),
                "smooth": params.get("smooth"),
                "lambda_smooth": params.get("lambda_smooth"),
                "alpha": params.get("alpha"),
                "beta": params.get("beta"),
                "params_source": source,
                **tuning,
                "selected_features": fit.get("selected_features"),
                "top_features": _top_features(Path(path).with_name("coefficients.npz")),
                "nonzero_fraction": fit.get("nonzero_fraction"),
                "r2": fit.get("r2"),
                "objective": fit.get("objective"),
                "converged": fit.get("converged"),
                "iterations": fit.get("iterations"),
                "solve_seconds": fit.get("solve_seconds"),
                "device": fit.get("device"),
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["sample", "target"], kind="stable").reset_index(drop=True)
