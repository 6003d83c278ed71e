"""The workflow's perturb-seq mode: its sample sheet, its demo input and the one call its rule makes.

Perturb-seq screens are not spatial, so they get their own sheet (config ``perturbseq.samples``, one row per
screen) instead of rows in the spatial sample sheet; like that sheet, every row is checked when the
workflow starts, and an error names the line, the column and the fix. Plain Python, testable without
Snakemake; ``workflow/rules/common.smk`` calls it at parse time.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from s3r.errors import S3RInputError
from s3r.perturb_analysis import read_gene_list

__all__ = ["PERTURBSEQ_COLUMNS", "demo_path", "read_perturbseq_sheet", "fit_options", "run_screen", "plot_screen"]

PERTURBSEQ_COLUMNS = {
    "sample": "unique screen name (letters, digits, '_', '-', '.')",
    "h5ad": "AnnData file with raw counts in .X (or 'layer') and per-cell labels in .obs",
    "perturbation_key": ".obs column of perturbation labels (default 'perturbation')",
    "control": "label of the control cells, the baseline (default 'control')",
    "covariates": ".obs columns entered unpenalised (comma-separated): batch, pct_counts_mt, total_counts, S_score, G2M_score, ...",
    "layer": ".layers key holding the raw counts (default .X)",
    "genes": "response genes (comma-separated, or a file with one per line); default: the highly variable genes",
    "s_genes": "S-phase genes (comma-separated, or a file with one per line): S_score is computed when .obs lacks it",
    "g2m_genes": "G2M-phase genes (comma-separated, or a file): G2M_score is computed when .obs lacks it",
    "gmt": "gene sets (GMT file) to test programmes for enrichment (hypergeometric, BH)",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FIT_KEYS = ("family", "theta", "l1_ratio", "alpha", "n_alphas", "eps", "cv", "selection", "n_top_genes", "n_programmes",
             "programme_threshold", "n_modules", "module_threshold")


def demo_path(name: str, suffix: str = ".h5ad") -> str:
    """Where the demo simulator writes screen ``name`` (``suffix`` ".gmt": its gene sets)."""
    return f"resources/demo/perturbseq/{name}{suffix}"


def _where(sheet, line, name=None, column=None) -> str:
    text = f"{sheet} line {line}"
    if name:
        text += f" (screen {name!r})"
    if column:
        text += f", column {column!r}"
    return text


def read_perturbseq_sheet(settings: dict, *, deep: bool = True) -> dict[str, dict[str, Any]]:
    """Screen name → {h5ad, perturbation_key, control, covariates, layer, genes} from config ``perturbseq``.

    ``deep`` also opens each existing .h5ad (backed, .obs only) to check the perturbation column, the control
    level and the covariates, so a misspelt column stops the run before any job.
    """
    sheet = str(settings["samples"])
    demos = {os.path.normpath(demo_path(n)): n for n in (settings.get("demo") or {})}
    demo_gmts = {os.path.normpath(demo_path(n, ".gmt")) for n in (settings.get("demo") or {})}
    if not Path(sheet).is_file():
        raise S3RInputError(f"perturb-seq sample sheet {sheet!r} not found; set perturbseq.samples to a tab-separated sheet (see config/README.md) or set perturbseq.enabled to false")
    with open(sheet, newline="", encoding="utf-8-sig") as fh:
        rows = [(i, [c.strip() for c in r]) for i, r in enumerate(csv.reader(fh, delimiter="\t"), 1)
                if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if len(rows) < 2:
        raise S3RInputError(f"{sheet}: no screens; write a header line and one row per screen")
    header_line, header = rows[0]
    for j, col in enumerate(header):
        if col not in PERTURBSEQ_COLUMNS:
            raise S3RInputError(f"{sheet} line {header_line}, column {j + 1}: unknown column {col!r}; known columns are {', '.join(PERTURBSEQ_COLUMNS)}")
    for required in ("sample", "h5ad"):
        if required not in header:
            raise S3RInputError(f"{sheet} line {header_line}: the header lacks column {required!r} ({PERTURBSEQ_COLUMNS[required]})")
    screens: dict[str, dict[str, Any]] = {}
    for line, cells in rows[1:]:
        record = {col: (v or None) for col, v in zip(header, cells + [""] * len(header))}
        name = record.get("sample")
        if not name or not _SAFE_NAME.match(name):
            raise S3RInputError(f"{_where(sheet, line, name, 'sample')}: give a name of letters, digits, '_', '-', '.' (it becomes a directory name)")
        if name in screens:
            raise S3RInputError(f"{_where(sheet, line, name, 'sample')}: duplicate screen name; give every row a unique name")
        path = record.get("h5ad")
        if not path:
            raise S3RInputError(f"{_where(sheet, line, name, 'h5ad')}: empty; give the screen's .h5ad file")
        generated = os.path.normpath(path) in demos
        if not generated and not Path(path).is_file():
            raise S3RInputError(f"{_where(sheet, line, name, 'h5ad')}: file {path!r} not found (relative paths start at {os.getcwd()}); fix the path")
        lists = {}
        for col in ("genes", "s_genes", "g2m_genes"):
            try:
                lists[col] = read_gene_list(record[col]) if record.get(col) else None
            except S3RInputError as err:
                raise S3RInputError(f"{_where(sheet, line, name, col)}: {err}") from None
        genes = lists["genes"]
        gmt = record.get("gmt")
        if gmt and not Path(gmt).is_file() and os.path.normpath(gmt) not in demo_gmts:
            raise S3RInputError(f"{_where(sheet, line, name, 'gmt')}: GMT file {gmt!r} not found (relative paths start at {os.getcwd()}); fix the path or leave it empty")
        spec = {
            "h5ad": path,
            "perturbation_key": record.get("perturbation_key") or "perturbation",
            "control": record.get("control") or "control",
            "covariates": [c.strip() for c in (record.get("covariates") or "").split(",") if c.strip()],
            "layer": record.get("layer"),
            "genes": genes or None,
            "s_genes": lists["s_genes"],
            "g2m_genes": lists["g2m_genes"],
            "gmt": gmt,
        }
        if deep and Path(path).is_file():
            _check_obs(spec, sheet, line, name)
        screens[name] = spec
    return screens


def _check_obs(spec: dict, sheet: str, line: int, name: str) -> None:
    import anndata

    from s3r.perturb import CELL_CYCLE_COVARIATES, QC_COVARIATES

    try:
        adata = anndata.read_h5ad(spec["h5ad"], backed="r")
    except Exception as err:  # many error types for a foreign or corrupt file
        raise S3RInputError(f"{_where(sheet, line, name, 'h5ad')}: cannot read {spec['h5ad']!r} as .h5ad ({type(err).__name__}); check the file") from None
    try:
        obs = adata.obs
        key = spec["perturbation_key"]
        if key not in obs.columns:
            raise S3RInputError(f"{_where(sheet, line, name, 'perturbation_key')}: {key!r} is not an .obs column of {spec['h5ad']} (columns: {', '.join(map(str, list(obs.columns)[:12]))})")
        levels = set(obs[key].astype(str))
        if spec["control"] not in levels:
            raise S3RInputError(f"{_where(sheet, line, name, 'control')}: no cell is labelled {spec['control']!r} in .obs[{key!r}]; name the control label")
        for cov in spec["covariates"]:
            if cov in CELL_CYCLE_COVARIATES and cov not in obs.columns and not (spec["s_genes"] and spec["g2m_genes"]):
                raise S3RInputError(f"{_where(sheet, line, name, 'covariates')}: {cov!r} is not an .obs column of {spec['h5ad']}; give columns 's_genes' and 'g2m_genes' to compute it")
            if cov not in obs.columns and cov not in QC_COVARIATES + CELL_CYCLE_COVARIATES:
                raise S3RInputError(f"{_where(sheet, line, name, 'covariates')}: {cov!r} is not an .obs column of {spec['h5ad']} (computed if absent: {', '.join(QC_COVARIATES + CELL_CYCLE_COVARIATES)})")
        if spec["layer"] and spec["layer"] not in adata.layers:
            raise S3RInputError(f"{_where(sheet, line, name, 'layer')}: no layer {spec['layer']!r} in {spec['h5ad']}")
    finally:
        adata.file.close()


def fit_options(settings: dict) -> dict[str, Any]:
    """The :func:`s3r.perturb.fit_perturbseq` keyword arguments from config ``perturbseq``."""
    return {key: settings[key] for key in _FIT_KEYS if key in settings}


OUTPUT_TABLES = ("coefficients", "covariate_coefficients", "programmes", "modules", "programme_scores", "gene_scores", "cell_scores",
                 "programme_tests", "enrichment", "alpha_performance", "summary")
FIGURES = ("coefficients_png", "scores_png", "shifts_png", "dotplot_png", "alpha_png", "enrichment_png")


def run_screen(spec: dict, settings: dict, *, outputs: dict, device: str = "cpu", log=None) -> None:
    """Fit one screen and write its tables (keys of ``outputs``: any of :data:`OUTPUT_TABLES`; coefficients,
    programmes and programme_scores are required): W, M, programmes, modules, per-cell programme scores, the
    programme tests, enrichment, the penalty-selection table and a JSON summary."""
    from s3r.perturb import analyse_screen, fit_perturbseq, read_screen, write_perturbseq

    options = fit_options(settings)
    seed = int(settings.get("seed", 0))
    screen = read_screen(spec["h5ad"], perturbation_key=spec["perturbation_key"], covariates=spec["covariates"], layer=spec.get("layer"),
                         s_genes=spec.get("s_genes"), g2m_genes=spec.get("g2m_genes"), random_state=seed)
    try:
        result = fit_perturbseq(screen.counts, screen.obs, perturbation_key=spec["perturbation_key"], control=spec["control"],
                                covariates=list(spec["covariates"]), gene_names=screen.gene_names, genes=spec.get("genes"),
                                device=device, random_state=seed, **options)
        analysis = None
        if any(k in outputs for k in ("cell_scores", "programme_tests", "enrichment", "alpha_performance")):
            analysis = analyse_screen(result, screen, perturbation_key=spec["perturbation_key"], control=spec["control"],
                                      gmt=spec.get("gmt"), ctrl_size=int(settings.get("score_ctrl_size", 50)), random_state=seed,
                                      pool=str(settings.get("score_pool", "unmoved")))
    except S3RInputError as err:
        raise S3RInputError(f"{spec['h5ad']}: {err}") from None
    write_perturbseq(result, **outputs, analysis=analysis, extra={"h5ad": spec["h5ad"], "settings": options})
    if log is not None:
        print(f"{result.coef.shape[0]} perturbations × {result.coef.shape[1]} genes × {len(result.cells)} cells; "
              f"programmes {result.programmes.value_counts().sort_index().to_dict()}; modules {result.modules.value_counts().sort_index().to_dict()}; "
              f"{result.model.report_['seconds']:.2f} s on {result.model.report_['device']}", file=log)


def plot_screen(*, coefficients, programmes, programme_scores, coefficients_png, scores_png, modules=None, programme_tests=None,
                alpha_performance=None, enrichment=None, shifts_png=None, dotplot_png=None, alpha_png=None, enrichment_png=None,
                title: str = "") -> None:
    """The screen's figures from the tables :func:`run_screen` wrote: effect and programme-score heatmaps,
    and (given their tables) the programme-shift heatmap, the dot plot, penalty selection and enrichment."""
    import pandas as pd

    from s3r.perturb import plot_perturbseq
    from s3r.report import perturbseq as fig

    coef = pd.read_csv(coefficients, sep="\t", index_col=0)
    labels = pd.read_csv(programmes, sep="\t", index_col=0)["programme"]
    scores = pd.read_csv(programme_scores, sep="\t", index_col=0)
    if modules is None:
        plot_perturbseq(coef, labels, scores, coefficients_png=coefficients_png, scores_png=scores_png, title=title)
    else:
        mods = pd.read_csv(modules, sep="\t", index_col=0)["module"]
        fig.plot_effects_heatmap(coef, labels, mods, coefficients_png, title=f"{title} perturbation effects (programmes × modules)".strip())
        plot_perturbseq(coef, labels, scores, coefficients_png=None, scores_png=scores_png, title=title)
    if programme_tests is not None:
        tests = pd.read_csv(programme_tests, sep="\t")
        mods = None if modules is None else pd.read_csv(modules, sep="\t", index_col=0)["module"]
        if tests.empty:
            tests = pd.DataFrame({"perturbation": list(coef.index), "programme": "none", "mean_difference": 0.0, "p_adj": 1.0})
        if shifts_png is not None:
            fig.plot_programme_shifts(tests, shifts_png, title=f"{title} programme score minus control".strip())
        if dotplot_png is not None:
            fig.plot_dotplot(tests, dotplot_png, modules=mods, title=f"{title} programme scores (minus control)".strip())
    if alpha_performance is not None and alpha_png is not None:
        fig.plot_alpha_performance(pd.read_csv(alpha_performance, sep="\t"), alpha_png, title=f"{title} penalty selection".strip())
    if enrichment is not None and enrichment_png is not None:
        fig.plot_enrichment(pd.read_csv(enrichment, sep="\t"), enrichment_png, title=f"{title} programme enrichment".strip())
