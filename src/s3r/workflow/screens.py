"""The perturb-seq screen sheet (config ``perturbseq.samples``, one row per screen), checked like the spatial one.

Screens are not spatial, so they get their own sheet instead of rows in the sample sheet; the same reader
(:mod:`s3r.workflow.sheet`) gives both the same line/column/fix errors before any job runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from s3r.errors import S3RInputError
from s3r.perturb_analysis import read_gene_list
from s3r.workflow.paths import perturbseq_demo_path
from s3r.workflow.sheet import Row, check_name, read_sheet, split_names

__all__ = ["PERTURBSEQ_COLUMNS", "read_perturbseq_sheet"]

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


def read_perturbseq_sheet(settings: dict, *, deep: bool = True) -> dict[str, dict[str, Any]]:
    """Screen name → {h5ad, perturbation_key, control, covariates, layer, genes, s_genes, g2m_genes, gmt}.

    ``deep`` also opens each existing .h5ad (backed, .obs only) to check the perturbation column, the control
    level and the covariates, so a misspelt column stops the run before any job.
    """
    sheet = str(settings["samples"])
    demos = {os.path.normpath(perturbseq_demo_path(n)) for n in (settings.get("demo") or {})}
    demo_gmts = {os.path.normpath(perturbseq_demo_path(n, ".gmt")) for n in (settings.get("demo") or {})}
    records, lines = read_sheet(
        sheet, PERTURBSEQ_COLUMNS, ("sample", "h5ad"), kind="screen",
        missing="set perturbseq.samples to a tab-separated sheet (see config/README.md) or set perturbseq.enabled to false",
    )
    screens: dict[str, dict[str, Any]] = {}
    for record, line in zip(records, lines):
        name = record["sample"]
        row = Row(sheet, line, name, "screen")
        check_name(row, name)
        path = record.get("h5ad")
        if not path:
            raise row.error("h5ad", "empty; give the screen's .h5ad file")
        if os.path.normpath(path) not in demos and not Path(path).is_file():
            raise row.error("h5ad", f"file {path!r} not found (relative paths start at {os.getcwd()}); fix the path")
        lists = {}
        for col in ("genes", "s_genes", "g2m_genes"):
            try:
                lists[col] = read_gene_list(record[col]) if record.get(col) else None
            except S3RInputError as err:
                raise row.error(col, str(err)) from None
        gmt = record.get("gmt")
        if gmt and not Path(gmt).is_file() and os.path.normpath(gmt) not in demo_gmts:
            raise row.error("gmt", f"GMT file {gmt!r} not found (relative paths start at {os.getcwd()}); fix the path or leave it empty")
        spec = {
            "h5ad": path,
            "perturbation_key": record.get("perturbation_key") or "perturbation",
            "control": record.get("control") or "control",
            "covariates": split_names(record.get("covariates") or ""),
            "layer": record.get("layer"),
            "genes": lists["genes"] or None,
            "s_genes": lists["s_genes"],
            "g2m_genes": lists["g2m_genes"],
            "gmt": gmt,
        }
        if deep and Path(path).is_file():
            _check_obs(spec, row)
        screens[name] = spec
    return screens


def _check_obs(spec: dict, row: Row) -> None:
    import anndata

    from s3r.perturb import CELL_CYCLE_COVARIATES, QC_COVARIATES

    try:
        adata = anndata.read_h5ad(spec["h5ad"], backed="r")
    except Exception as err:  # many error types for a foreign or corrupt file
        raise row.error("h5ad", f"cannot read {spec['h5ad']!r} as .h5ad ({type(err).__name__}); check the file") from None
    try:
        obs = adata.obs
        key = spec["perturbation_key"]
        if key not in obs.columns:
            raise row.error("perturbation_key", f"{key!r} is not an .obs column of {spec['h5ad']} (columns: {', '.join(map(str, list(obs.columns)[:12]))})")
        levels = set(obs[key].astype(str))
        if spec["control"] not in levels:
            raise row.error("control", f"no cell is labelled {spec['control']!r} in .obs[{key!r}]; name the control label")
        computed = QC_COVARIATES + CELL_CYCLE_COVARIATES
        for cov in spec["covariates"]:
            if cov in CELL_CYCLE_COVARIATES and cov not in obs.columns and not (spec["s_genes"] and spec["g2m_genes"]):
                raise row.error("covariates", f"{cov!r} is not an .obs column of {spec['h5ad']}; give columns 's_genes' and 'g2m_genes' to compute it")
            if cov not in obs.columns and cov not in computed:
                raise row.error("covariates", f"{cov!r} is not an .obs column of {spec['h5ad']} (computed if absent: {', '.join(computed)})")
        if spec["layer"] and spec["layer"] not in adata.layers:
            raise row.error("layer", f"no layer {spec['layer']!r} in {spec['h5ad']}")
    finally:
        adata.file.close()
