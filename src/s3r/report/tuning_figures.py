"""The tuning's evidence in a fit's report: its trials, the chosen one, the yardsticks, and three figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError

__all__ = ["chosen_trial", "tuning_trials", "yardsticks", "plot_tuning"]


def chosen_trial(tune_dir) -> int | None:
    """The selected trial's number from the parameter file; None when the parameters were not tuned."""
    from s3r.artifacts import PARAMS_FILE, read_params_file

    path = Path(tune_dir) / PARAMS_FILE
    if not path.is_file():
        return None
    trial = (read_params_file(path)["tuning"] or {}).get("trial")
    return int(trial) if trial is not None else None


def tuning_trials(tune_dir) -> pd.DataFrame:
    """One row per trial of every round (number, round, λ, α, β, CV loss, its standard error, fold losses)."""
    tune_dir = Path(tune_dir)
    files = sorted(tune_dir.glob("round_*/results.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not files:
        raise S3RInputError(f"{tune_dir}: no round_*/results.json; --tune must be a directory written by 's3r tune' (or the workflow's results/tune/SAMPLE/TARGET)")
    rows = []
    for path in files:
        for t in json.loads(path.read_text())["trials"]:
            rows.append({"number": t["number"], "round": t["round"], **{k: t["params"][k] for k in ("lambda_smooth", "alpha", "beta")},
                         "cv_loss": t.get("value"), "cv_se": t.get("se"), "fold_losses": t.get("fold_losses") or []})
    return pd.DataFrame(rows).sort_values("number", kind="stable").reset_index(drop=True)


def yardsticks(tune_dir) -> dict[str, float]:
    """{name: CV loss} of the models a trial must beat (the intercept-only model, the target's own spatial trend),
    from the parameter file; empty when the tuning recorded none."""
    from s3r.artifacts import PARAMS_FILE, read_params_file

    path = Path(tune_dir) / PARAMS_FILE
    tuning = (read_params_file(path)["tuning"] or {}) if path.is_file() else {}
    names = {"null_cv_loss": "intercept-only model", "trend_cv_loss": "spatial trend of the target"}
    return {label: float(tuning[key]) for key, label in names.items() if tuning.get(key) is not None}


def plot_tuning(trials: pd.DataFrame, chosen: int | None, paths: dict[str, Path], *, yardsticks: dict[str, float] | None = None,
                vector: str | None = "svg") -> dict[str, dict[str, Path]]:
    """Optimisation history, CV loss against each hyperparameter, and the fold spread per trial; ``yardsticks``
    ({name: CV loss}, e.g. the intercept-only model's) are drawn as lines, so a "no effect" verdict shows as trials
    that do not beat them."""
    import matplotlib.pyplot as plt

    from s3r.report.style import save_figure, use_report_style

    use_report_style()
    ok = trials[trials["cv_loss"].notna()]
    out = {}
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ax.scatter(ok["number"], ok["cv_loss"], c=ok["round"], cmap="viridis", s=18, zorder=3, label="trial (colour: round)")
    ax.step(ok["number"], ok["cv_loss"].cummin(), where="post", color="tab:red", label="best so far")
    _yardstick_lines(ax, yardsticks)
    ax.set_xlabel("trial")
    ax.set_ylabel("CV loss")
    ax.set_title("optimisation history")
    ax.legend(frameon=False)
    fig.tight_layout()
    out["tuning_history"] = save_figure(fig, paths["tuning_history"], vector=vector)

    fig, axes = plt.subplots(1, 3, figsize=(10.0, 3.2), sharey=True)
    for ax, name, label in zip(axes, ("lambda_smooth", "alpha", "beta"), ("λ (smoothness)", "α (lasso)", "β (group lasso)")):
        ax.scatter(ok[name], ok["cv_loss"], s=18, color="0.3")
        if chosen is not None and chosen in set(ok["number"]):
            row = ok[ok["number"] == chosen].iloc[0]
            ax.scatter([row[name]], [row["cv_loss"]], s=60, facecolors="none", edgecolors="tab:red", linewidths=1.5, label="chosen")
            ax.legend(frameon=False)
        _yardstick_lines(ax, yardsticks, legend=ax is axes[0])
        ax.set_xscale("log")
        ax.set_xlabel(label)
    axes[0].set_ylabel("CV loss")
    fig.suptitle("CV loss against each hyperparameter")
    fig.tight_layout()
    out["tuning_parameters"] = save_figure(fig, paths["tuning_parameters"], vector=vector)

    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    ranked = ok.sort_values(["cv_loss", "number"], kind="stable").reset_index(drop=True)
    # one artist per kind, not per trial (30 trials' scatter and errorbar calls were most of the figure's time)
    folds = [(i, v) for i, losses in enumerate(ranked["fold_losses"]) for v in (losses or [])]
    if folds:
        ax.scatter(*zip(*folds), s=8, color="0.6", zorder=2)
    se = ranked["cv_se"].fillna(0.0).to_numpy(dtype=float)
    for mask, colour in ((ranked["number"] != chosen, "0.1"), (ranked["number"] == chosen, "tab:red")):
        if mask.any():
            ax.errorbar(np.flatnonzero(mask), ranked["cv_loss"][mask], yerr=se[mask.to_numpy()], fmt="o", markersize=4, color=colour,
                        zorder=3)
    _yardstick_lines(ax, yardsticks)
    ax.set_xticks(range(len(ranked)), [str(n) for n in ranked["number"]], fontsize=6, rotation=90)
    ax.set_xlabel("trial, best first")
    ax.set_ylabel("CV loss (mean ± SE; dots: folds)")
    ax.set_title("fold spread")
    fig.tight_layout()
    out["tuning_folds"] = save_figure(fig, paths["tuning_folds"], vector=vector)
    return out


def _yardstick_lines(ax, yardsticks: dict[str, float] | None, legend: bool = True) -> None:
    styles = ("--", ":")
    for (name, value), style in zip((yardsticks or {}).items(), styles):
        if value is not None and np.isfinite(value):
            ax.axhline(float(value), color="tab:blue", linestyle=style, linewidth=1, label=name)
    if legend and yardsticks:
        ax.legend(frameon=False, fontsize=7)
