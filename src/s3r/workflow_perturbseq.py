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

__all__ = ["PERTURBSEQ_COLUMNS", "demo_path", "read_perturbseq_sheet", "fit_options", "run_screen", "plot_screen"]

PERTURBSEQ_COLUMNS = {
    "sample": "unique screen name (letters, digits, '_', '-', '.')",
    "h5ad": "AnnData file with raw counts in .X (or 'layer') and per-cell labels in .obs",
    "perturbation_key": ".obs column of perturbation labels (default 'perturbation')",
    "control": "label of the control cells, the baseline (default 'control')",
    "covariates": ".obs columns entered unpenalised (comma-separated): batch, pct_counts_mt, total_counts, S_score, G2M_score, ...",
    "layer": ".layers key holding the raw counts (default .X)",
    "genes": "response genes (comma-separated, or a file with one per line); default: the highly variable genes",
}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FIT_KEYS = ("family", "theta", "l1_ratio", "alpha", "n_alphas", "cv", "n_top_genes", "n_programmes", "programme_threshold")


def demo_path(name: str) -> str:
    return f"resources/demo/perturbseq/{name}.h5ad"


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
        genes = record.get("genes")
        if genes:
            if Path(genes).is_file():
                genes = [g.strip() for g in Path(genes).read_text().splitlines() if g.strip() and not g.startswith("#")]
            else:
                genes = [g.strip() for g in genes.split(",") if g.strip()]
        spec = {
            "h5ad": path,
            "perturbation_key": record.get("perturbation_key") or "perturbation",
            "control": record.get("control") or "control",
            "covariates": [c.strip() for c in (record.get("covariates") or "").split(",") if c.strip()],
            "layer": record.get("layer"),
            "genes": genes or None,
        }
        if deep and Path(path).is_file():
            _check_obs(spec, sheet, line, name)
        screens[name] = spec
    return screens


def _check_obs(spec: dict, sheet: str, line: int, name: str) -> None:
    import anndata

    from s3r.perturb import QC_COVARIATES

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
            if cov not in obs.columns and cov not in QC_COVARIATES:
                raise S3RInputError(f"{_where(sheet, line, name, 'covariates')}: {cov!r} is not an .obs column of {spec['h5ad']} (computed if absent: {', '.join(QC_COVARIATES)})")
        if spec["layer"] and spec["layer"] not in adata.layers:
            raise S3RInputError(f"{_where(sheet, line, name, 'layer')}: no layer {spec['layer']!r} in {spec['h5ad']}")
    finally:
        adata.file.close()


def fit_options(settings: dict) -> dict[str, Any]:
    """The :func:`s3r.perturb.fit_perturbseq` keyword arguments from config ``perturbseq``."""
    return {key: settings[key] for key in _FIT_KEYS if key in settings}


def run_screen(spec: dict, settings: dict, *, outputs: dict, device: str = "cpu", log=None) -> None:
    """Fit one screen and write its tables (keys of ``outputs``: coefficients, programmes, programme_scores,
    gene_scores, summary)."""
    from s3r.perturb import fit_perturbseq_h5ad, write_perturbseq

    options = fit_options(settings)
    result = fit_perturbseq_h5ad(
        spec["h5ad"], perturbation_key=spec["perturbation_key"], control=spec["control"], covariates=spec["covariates"],
        layer=spec.get("layer"), genes=spec.get("genes"), device=device, random_state=int(settings.get("seed", 0)), **options,
    )
    write_perturbseq(result, **outputs, extra={"h5ad": spec["h5ad"], "settings": options})
    if log is not None:
        print(f"{result.coef.shape[0]} perturbations × {result.coef.shape[1]} genes; programmes {result.programmes.value_counts().sort_index().to_dict()}; "
              f"{result.model.report_['seconds']:.2f} s on {result.model.report_['device']}", file=log)


def plot_screen(*, coefficients, programmes, programme_scores, coefficients_png, scores_png, title: str = "") -> None:
    """The two clustered heatmaps of a screen, from the tables :func:`run_screen` wrote."""
    import pandas as pd

    from s3r.perturb import plot_perturbseq

    coef = pd.read_csv(coefficients, sep="\t", index_col=0)
    labels = pd.read_csv(programmes, sep="\t", index_col=0)["programme"]
    scores = pd.read_csv(programme_scores, sep="\t", index_col=0)
    plot_perturbseq(coef, labels, scores, coefficients_png=coefficients_png, scores_png=scores_png, title=title)
