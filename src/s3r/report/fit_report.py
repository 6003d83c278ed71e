"""The report of one fit: which features drive the target, where, and how sure we are.

Inputs are the files ``s3r fit`` / the workflow's ``fit_final`` write (``coefficients.npz``, ``fit.json``) and,
when the parameters were tuned, the tuning directory (``round_*/results.json`` and the per-fold solutions
``round_*/fold_*.npz``). Every figure is a PNG (with an SVG or PDF beside it when ``vector`` asks; ``s3r report``'s
default is SVG, the workflow's PNG only), drawn with the fixed style of :mod:`s3r.report.style`, so the same inputs
give the same bytes. The tuning's figures are :mod:`s3r.report.tuning_figures`.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError
from s3r.io import write_csv
from s3r.report.convergence import plot_convergence
from s3r.report.tuning_figures import chosen_trial, plot_tuning, tuning_trials, yardsticks

__all__ = ["FitOutputs", "load_fit", "read_fit_record", "chosen_trial", "feature_table", "fold_selection", "tuning_trials", "observed_and_predicted",
           "plot_coefficient_maps", "plot_convergence", "fit_report"]


@dataclass
class FitOutputs:
    W: np.ndarray  # spots × features
    coords: np.ndarray
    spot_ids: list[str]
    feature_names: list[str]
    report: dict  # fit.json
    observed: np.ndarray | None = None
    fitted: np.ndarray | None = None
    covariate_coef: np.ndarray | None = None
    covariate_names: list[str] | None = None
    intercept: float = 0.0
    _near: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def near(self) -> np.ndarray:
        """Each spot's neighbourhood for the colour limits (:func:`s3r.report.style.neighbourhoods`), made once per fit:
        the maps, the heatmap and observed vs predicted share it (a k-d tree over 10⁶ spots costs seconds)."""
        if self._near is None:
            from s3r.report.style import neighbourhoods

            self._near = neighbourhoods(self.coords)
        return self._near


def read_fit_record(fit_dir) -> dict:
    """A fit directory's fit.json (what the fit did: target, family, counts policy, ...) without its coefficients."""
    fit_dir = Path(fit_dir)
    for path in (fit_dir / "fit.json", fit_dir / "coefficients.npz"):
        if not path.is_file():
            raise S3RInputError(f"{path}: not found; --fit must be a directory written by 's3r fit' (coefficients.npz, fit.json)")
    try:
        return json.loads((fit_dir / "fit.json").read_text())
    except json.JSONDecodeError as err:
        raise S3RInputError(f"{fit_dir / 'fit.json'}: not valid JSON (line {err.lineno}); rerun 's3r fit'") from None


def load_fit(fit_dir) -> FitOutputs:
    """Read a fit directory; a missing or foreign file is an S3RInputError naming it and the fix."""
    report = read_fit_record(fit_dir)
    npz_path = Path(fit_dir) / "coefficients.npz"
    with np.load(npz_path, allow_pickle=False) as f:
        missing = [key for key in ("coef", "coords", "spot_ids", "feature_names") if key not in f.files]
        if missing:
            raise S3RInputError(f"{npz_path}: lacks {', '.join(missing)}; rerun 's3r fit' to rewrite it")
        W = np.asarray(f["coef"], dtype=np.float64)
        outputs = FitOutputs(
            W=W, coords=np.asarray(f["coords"], dtype=np.float64), spot_ids=[str(s) for s in f["spot_ids"]],
            feature_names=[str(s) for s in f["feature_names"]], report=report,
            observed=np.asarray(f["observed"], dtype=np.float64) if "observed" in f.files else None,
            fitted=np.asarray(f["fitted"], dtype=np.float64) if "fitted" in f.files else None,
            covariate_coef=np.asarray(f["covariate_coef"], dtype=np.float64).reshape(-1) if "covariate_coef" in f.files else None,
            covariate_names=[str(s) for s in f["covariate_names"]] if "covariate_names" in f.files else None,
            intercept=float(np.asarray(f["intercept"]).reshape(-1)[0]) if "intercept" in f.files else 0.0,
        )
    return outputs


def observed_and_predicted(fit: FitOutputs, data=None, *, source: str = "data") -> tuple[np.ndarray, np.ndarray] | None:
    """(observed, predicted) per fitted spot, in the fit's spot order; None when neither is available.

    With ``data`` (a :class:`~s3r.io.RegressionData` of the same spots, e.g. the fit's input), the prediction is
    recomputed from the stored coefficients, ŷ_i = ⟨x_i, W_i⟩ + z_iᵀγ + intercept, matching spots and features by
    name, so fits written before ``write_fit`` stored its fitted values can be checked too. Without ``data``, the
    values ``write_fit`` stored are used. Count families need their offset, which only the stored values carry.
    """
    if data is None:
        if fit.observed is None or fit.fitted is None:
            return None
        return fit.observed, fit.fitted
    family = fit.report.get("family", "gaussian")
    if family != "gaussian":
        if fit.fitted is None:
            raise S3RInputError(f"{source}: predictions of a {family} fit need its offset (log library size), which only the fit's "
                                f"stored values carry; refit with the current 's3r fit' to store them, or omit the data")
        return _align(data, fit, source)[1], fit.fitted
    rows, y = _align(data, fit, source)
    missing = [f for f in fit.feature_names if f not in data.feature_names]
    if missing:
        raise S3RInputError(f"{source}: lacks feature(s) {', '.join(repr(f) for f in missing[:3])} of the fit; pass the data the fit was run on")
    cols = [data.feature_names.index(f) for f in fit.feature_names]
    X = data.X[np.ix_(rows, cols)]
    predicted = np.einsum("np,np->n", X, fit.W) + fit.intercept
    gamma = fit.covariate_coef if fit.covariate_coef is not None else np.zeros(0)
    if gamma.size:
        names = fit.covariate_names or []
        if data.covariates is None or any(c not in data.covariate_names for c in names):
            raise S3RInputError(f"{source}: the fit used covariates {', '.join(names)}; pass them with the data (--covariates)")
        Z = data.covariates[np.ix_(rows, [data.covariate_names.index(c) for c in names])]
        predicted = predicted + Z @ gamma
    return y, predicted


def _align(data, fit: FitOutputs, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``data`` in the fit's spot order, and y in that order."""
    index = {s: i for i, s in enumerate(data.spot_ids)}
    absent = [s for s in fit.spot_ids if s not in index]
    if absent:
        raise S3RInputError(f"{source}: {len(absent)} of the fit's {len(fit.spot_ids)} spots are missing (e.g. {absent[0]!r}); "
                            f"pass the data the fit was run on")
    rows = np.array([index[s] for s in fit.spot_ids], dtype=np.int64)
    return rows, data.y[rows]


# -- tables ------------------------------------------------------------------------------------------------
def fold_selection(tune_dir, feature_names: Sequence[str]) -> tuple[np.ndarray, int] | None:
    """(times each feature is selected across CV folds at the chosen trial, number of folds), or None.

    The chosen trial is best_params.json's ``trial``; its per-fold solutions are in round_r/fold_k.npz of the
    round it ran in. None when those state files were not kept (``s3r tune`` deletes them unless
    ``--keep-states``; the workflow keeps them).
    """
    from s3r.tune.files import read_fold_state

    tune_dir = Path(tune_dir)
    trial = chosen_trial(tune_dir)
    if trial is None:  # parameters from config, not tuned
        return None
    counts, n_folds = np.zeros(len(feature_names), dtype=np.int64), 0
    for state in sorted(tune_dir.glob("round_*/fold_*.npz")):
        arrays = read_fold_state(state)  # maps packed or whole (s3r.tune.files.pack_maps)
        numbers = arrays["numbers"].tolist()
        if trial not in numbers:
            continue
        W = arrays["W"][:, numbers.index(trial), :]
        if W.shape[1] != len(feature_names):
            raise S3RInputError(f"{state}: {W.shape[1]} features, the fit has {len(feature_names)}; --tune must be this fit's tuning directory")
        counts += np.any(W != 0, axis=0)
        n_folds += 1
    return (counts, n_folds) if n_folds else None


def feature_table(W: np.ndarray, feature_names: Sequence[str], folds: tuple[np.ndarray, int] | None = None) -> pd.DataFrame:
    """Selected features (non-zero at some spot), strongest first: mean |coefficient| over spots, the share
    of spots where it is non-zero, its largest |coefficient|, and in how many CV folds it was selected."""
    W = np.asarray(W, dtype=np.float64)
    mean_abs = np.abs(W).mean(axis=0)
    share = (W != 0).mean(axis=0)
    max_abs = np.abs(W).max(axis=0) if W.shape[0] else np.zeros(W.shape[1])
    columns = {"feature": [], "mean_abs_coef": [], "share_nonzero": [], "max_abs_coef": [], "folds_selected": [], "n_folds": []}
    for j in _strongest_first(mean_abs, feature_names):
        if share[j] == 0:
            continue
        columns["feature"].append(str(feature_names[j]))
        columns["mean_abs_coef"].append(float(mean_abs[j]))
        columns["share_nonzero"].append(float(share[j]))
        columns["max_abs_coef"].append(float(max_abs[j]))
        columns["folds_selected"].append(int(folds[0][j]) if folds else pd.NA)
        columns["n_folds"].append(int(folds[1]) if folds else pd.NA)
    table = pd.DataFrame(columns)
    return table.astype({"folds_selected": "Int64", "n_folds": "Int64"})


def _strongest_first(values, names) -> list[int]:
    from s3r.report.style import feature_order

    return feature_order(values, names)


# -- figures -----------------------------------------------------------------------------------------------
def plot_coefficient_maps(fit, png_path, *, max_features: int = 6, title: str = "", tissue=None, vector: str | None = "svg") -> dict[str, Path]:
    """Maps of the leading features' coefficients (largest mean |coefficient| first), each on a diverging scale
    centred at zero. ``fit``: a :class:`FitOutputs` or a fit directory. Returns {"png": ..., "svg": ...}."""
    import matplotlib.pyplot as plt

    from s3r.report.style import colour_limit, grid_shape, panel_figsize, save_figure, spatial_scatter, use_report_style

    if not isinstance(fit, FitOutputs):
        fit = load_fit(fit)
    use_report_style()
    mean_abs = np.abs(fit.W).mean(axis=0)
    order = [j for j in _strongest_first(mean_abs, fit.feature_names) if mean_abs[j] > 0][:max_features]
    if not order:
        return _no_map_figure(fit, png_path, title or "coefficients of the leading features", vector)
    rows, cols = grid_shape(len(order))
    fig, axes = plt.subplots(rows, cols, figsize=panel_figsize(fit.coords, rows, cols), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    verdict = fit_verdict(fit)
    labels, heading = map_labels(fit.W, fit.feature_names, order, title or "coefficients of the leading features", verdict)
    for ax, j, label in zip(axes.ravel(), order, labels):
        ax.set_axis_on()
        limit, beyond = colour_limit(fit.coords, fit.W[:, j], near=fit.near)
        spatial_scatter(ax, fit.coords, fit.W[:, j], center_zero=True, vmax=limit, title=label + _clip_note(fit.W[:, j], limit, beyond),
                        tissue=tissue, extend="both" if beyond else "neither")
    fig.suptitle(heading)
    fig.tight_layout()
    return save_figure(fig, png_path, vector=vector)


def _clip_note(column, limit: float, beyond: int) -> str:
    """Said in the panel's title where isolated spots lie beyond the colour scale (drawn at its ends)."""
    if not beyond:
        return ""
    peak = float(column[np.argmax(np.abs(column))])
    return f"\n{beyond} isolated spot{'s' * (beyond != 1)} beyond ±{limit:.2g} (up to {peak:+.2g})"


def _no_map_figure(fit: FitOutputs, png_path, heading: str, vector: str | None) -> dict[str, Path]:
    """The figure in place of the maps when every coefficient is zero: the answer in words, not an empty map."""
    import matplotlib.pyplot as plt

    from s3r.report.style import save_figure

    _, heading = map_labels(fit.W, fit.feature_names, [], heading, fit_verdict(fit))
    extra = (fit.report or {}).get("extra") or {}
    body = "no feature selected: every coefficient is 0 at every spot"
    if extra.get("final_model"):
        body += "\n\n" + _wrap(f"final model: {extra['final_model']}", 100)
    fig = plt.figure(figsize=(9.0, 4.0))
    fig.text(0.5, 0.93, _wrap(heading, 100) if "\n" not in heading else heading, ha="center", va="top", fontsize=9)
    fig.text(0.5, 0.3, body, ha="center", va="center", fontsize=9)
    return save_figure(fig, png_path, vector=vector)


def map_labels(W, names, order, heading: str, verdict) -> tuple[list[str], str]:
    """Panel titles and the figure's heading. A map of one value at every spot is titled with that value, and
    when every shown map is such, the heading says so in words; "no effect" verdicts lead the heading."""
    labels = [f"{names[j]}: {W[0, j]:+.3g} at every spot" if spatially_constant(W[:, j])
              else f"{names[j]} (non-zero at {float((W[:, j] != 0).mean()):.0%})" for j in order]
    if verdict is not None and verdict[0] is False:  # said in words, not left to an empty-looking map
        return labels, f"NO EFFECT FOUND: {heading}\n{_wrap(verdict[1])}"
    if order and all(spatially_constant(W[:, j]) for j in order):  # one colour per map reads as a pattern; it is not
        heading = f"{heading}\nevery map is spatially constant: a global effect of the features, no spatial variation at the chosen λ"
    return labels, heading


def spatially_constant(column, rtol: float = 1e-4) -> bool:
    """True when a coefficient map holds one value at every spot (to ``rtol`` of its size): the smoothness term
    fused the section, so the map is a global regression coefficient and must be called that, not drawn as a pattern.
    ``rtol`` sits above the final fit's float32 rounding (tol 1e-5: fused DLPFC maps of TAC1 spread by 3e-6 of their
    size, and at 1e-6 two of its four were drawn as full-colour "patterns") and far below any map worth drawing."""
    column = np.asarray(column, dtype=np.float64)
    return column.size > 0 and float(np.ptp(column)) <= rtol * max(float(np.abs(column).max()), 1e-300)


def fit_verdict(fit) -> tuple[bool | None, str] | None:
    """(effect_found, words) from the tuning that chose this fit's parameters, or None for untuned fits."""
    extra = (fit.report or {}).get("extra") or {}
    if "verdict" not in extra:
        return None
    return extra.get("effect_found"), str(extra["verdict"])


def _wrap(text: str, width: int = 90) -> str:
    return "\n".join(textwrap.wrap(text, width))


def plot_heatmap(fit: FitOutputs, domains: np.ndarray, png_path, *, max_features: int = 30, title: str = "", vector: str | None = "svg"):
    """Features × spots, spots grouped by spatial domain: where each feature's effect switches on and off."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    from s3r.report.style import categorical_colors, colour_limit, save_figure, use_report_style

    use_report_style()
    mean_abs = np.abs(fit.W).mean(axis=0)
    features = [j for j in _strongest_first(mean_abs, fit.feature_names) if mean_abs[j] > 0][:max_features]
    order = np.lexsort((np.arange(len(domains)), domains))
    fig, (strip, ax) = plt.subplots(2, 1, figsize=(8.0, 1.2 + 0.22 * max(len(features), 1)), sharex=True,
                                    gridspec_kw={"height_ratios": [1, max(len(features), 1) * 1.5]})
    colors = categorical_colors(int(domains.max()) + 1)
    strip.imshow(np.array([colors[d] for d in domains[order]])[None, :, :], aspect="auto", interpolation="nearest")
    strip.set_yticks([])
    strip.set_title(title or "coefficients by spatial domain")
    bounds = np.flatnonzero(np.diff(domains[order])) + 0.5
    for b in bounds:
        strip.axvline(b, color="white", linewidth=1)
    if features:
        M = fit.W[order][:, features].T
        # the maps' own scale (isolated spots do not set it), so the heatmap and the maps read alike
        limit = max(colour_limit(fit.coords, fit.W[:, j], near=fit.near)[0] for j in features) or 1.0
        clipped = bool((np.abs(M) > limit * (1 + 1e-9)).any())
        image = ax.imshow(M, aspect="auto", interpolation="nearest", cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit))
        ax.set_yticks(range(len(features)), [fit.feature_names[j] for j in features])
        for b in bounds:
            ax.axvline(b, color="0.3", linewidth=0.6)
        fig.colorbar(image, ax=[strip, ax], shrink=0.8, pad=0.01, label="coefficient" + (" (isolated spots beyond the ends)" if clipped else ""),
                     extend="both" if clipped else "neither")
    else:
        ax.text(0.5, 0.5, "no feature selected", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xticks([])
    ax.set_xlabel(f"{len(domains)} spots, grouped by domain (D1 … D{int(domains.max()) + 1})")
    return save_figure(fig, png_path, vector=vector)


def plot_observed_vs_predicted(fit: FitOutputs, png_path, *, observed=None, predicted=None, title: str = "", vector: str | None = "svg"):
    """Observed against predicted per spot (with R² of these points), and both as maps on one colour scale,
    so a misfit shows where it is, not only how large."""
    import matplotlib.pyplot as plt

    from s3r.report.style import panel_figsize, save_figure, spatial_scatter, upper_colour_limit, use_report_style

    use_report_style()
    y = np.asarray(fit.observed if observed is None else observed, dtype=np.float64)
    yhat = np.asarray(fit.fitted if predicted is None else predicted, dtype=np.float64)
    width, height = panel_figsize(fit.coords, 1, 2)
    fig, axes = plt.subplots(1, 3, figsize=(width + 3.6, max(height, 3.4)), gridspec_kw={"width_ratios": [1.0, 1.15, 1.15]})
    ax = axes[0]
    ax.scatter(y, yhat, s=6, alpha=0.6, linewidths=0, color="tab:blue")
    lo, hi = float(min(y.min(), yhat.min())), float(max(y.max(), yhat.max()))
    ax.plot([lo, hi], [lo, hi], color="0.4", linestyle="--", linewidth=1)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted")
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - yhat) ** 2).sum()) / total if total > 0 else float("nan")
    ax.set_title(f"R² = {r2:.3f}")
    # one scale for both maps, its top not set by a few isolated spots (a cell with ten times its neighbours' expression)
    vmax = max(upper_colour_limit(fit.coords, y, lo, near=fit.near)[0], upper_colour_limit(fit.coords, yhat, lo, near=fit.near)[0])
    for panel, values, name in ((axes[1], y, "observed"), (axes[2], yhat, "predicted")):
        above = int((values > vmax).sum())
        note = f"\n{above} isolated spot{'s' * (above != 1)} above {vmax:.2g} (up to {float(values.max()):.2g})" if above else ""
        spatial_scatter(panel, fit.coords, values, vmin=lo, vmax=vmax, title=name + note, extend="max" if above else "neither")
    fig.suptitle(title or "observed vs predicted")
    fig.tight_layout()
    return save_figure(fig, png_path, vector=vector)


# -- the whole per-fit report --------------------------------------------------------------------------------
def fit_report(fit_dir, out_dir, *, tune_dir=None, data=None, max_features: int = 6, domains_k: int | None = None,
               title: str = "", data_source: str = "data", tissue=None, vector: str | None = "svg") -> dict[str, Path]:
    """Write every figure and table of one fit into ``out_dir``; returns {name: PNG or TSV path}.

    ``tissue``: a tissue image (s3r.report.tissue) to draw the coefficient maps over; plain maps without one.
    ``vector``: "svg" or "pdf" writes a vector copy beside each PNG, None PNGs only (at study scale the SVG maps
    cost a third of the report's time and ~5 MB per target).

    Names: coefficient_maps, heatmap, features (TSV), domains (TSV), convergence, observed_vs_predicted (with
    ``data``, a RegressionData of the fitted spots, or when the fit stored its fitted values), tuning_history,
    tuning_parameters, tuning_folds, trials (TSV) (with ``tune_dir``). ``data_source`` names the data in errors.
    A fit with every coefficient zero has no domains or heatmap (nothing varies over the tissue): its coefficient
    map figure says so in words, with the tuning's verdict when there is one.
    """
    from s3r.report.domains import domain_table, spot_domains

    fit = load_fit(fit_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    label = f"{title}: " if title else ""

    folds = fold_selection(tune_dir, fit.feature_names) if tune_dir is not None else None
    files["features"] = out / "features.tsv"
    write_csv(feature_table(fit.W, fit.feature_names, folds), files["features"], sep="\t", index=False, na_rep="NA")

    files["coefficient_maps"] = plot_coefficient_maps(fit, out / "coefficient_maps.png", max_features=max_features,
                                                      title=f"{label}leading features' coefficients", tissue=tissue, vector=vector)["png"]
    if np.any(fit.W != 0):
        labels, _, _ = spot_domains(fit.W, k=domains_k, seed=0)
        files["domains"] = out / "domains.tsv"
        write_csv(domain_table(fit.spot_ids, labels), files["domains"], sep="\t", index=False)
        files["heatmap"] = plot_heatmap(fit, labels, out / "heatmap.png", title=f"{label}coefficients by spatial domain", vector=vector)["png"]
    files["convergence"] = plot_convergence(fit, out / "convergence.png", vector=vector)["png"]
    pair = observed_and_predicted(fit, data, source=data_source)
    if pair is not None:
        files["observed_vs_predicted"] = plot_observed_vs_predicted(fit, out / "observed_vs_predicted.png", observed=pair[0],
                                                                    predicted=pair[1], vector=vector)["png"]

    if tune_dir is not None:
        trials = tuning_trials(tune_dir)
        chosen = chosen_trial(tune_dir)
        names = ("tuning_history", "tuning_parameters", "tuning_folds")
        figures = plot_tuning(trials, chosen, {name: out / f"{name}.png" for name in names}, yardsticks=yardsticks(tune_dir), vector=vector)
        files.update({name: figures[name]["png"] for name in names})
        files["trials"] = out / "trials.tsv"
        write_csv(trials.assign(fold_losses=[",".join(f"{v:.10g}" for v in x) for x in trials["fold_losses"]]),
                  files["trials"], sep="\t", index=False)
    return files


def fit_reports(fits_dir, out_dir, targets: list[str], *, tune_dir=None, title_prefix: str = "", processes: int = 1,
                **options) -> None:
    """:func:`fit_report` of every target of a chunk (``fits_dir/<target>`` → ``out_dir/<target>``, titled
    ``title_prefix + target``, its tuning from ``tune_dir/<target>`` where that holds rounds), in ``processes`` forked
    worker processes; ``options``: the rest of :func:`fit_report`'s keywords.

    Why processes: a target's figures cost ~1.5 CPU-s of matplotlib on one thread, and a chunk's report is the last
    job of a run (67 DLPFC targets: ~100 s with the other core idle). The workers are forked, so they share the
    tissue image and the imports already made; a target's files are the same whichever worker draws them."""
    jobs = []
    for target in targets:
        tune = None if tune_dir is None else Path(tune_dir) / target
        jobs.append((Path(fits_dir) / target, Path(out_dir) / target,
                     {**options, "tune_dir": tune if tune is not None and (tune / "round_0").is_dir() else None,
                      "title": f"{title_prefix}{target}"}))
    if processes <= 1 or len(jobs) <= 1:
        for fit_dir, out, kwargs in jobs:
            fit_report(fit_dir, out, **kwargs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(processes, len(jobs)), mp_context=multiprocessing.get_context("fork")) as pool:
        for done in [pool.submit(fit_report, fit_dir, out, **kwargs) for fit_dir, out, kwargs in jobs]:
            done.result()  # a worker's error is raised here
