"""Perturb-seq regression: expression = perturbations · W + covariates · M + noise, then gene programmes.

Design from an ``.obs`` column of perturbation labels (one-hot, the control level as baseline), unpenalised
covariates from ``.obs`` (categorical → one-hot without the first level; numeric as is), responses = highly
variable genes, all genes fitted at once by :class:`s3r.glm.GLMNet`. Genes are then clustered into programmes
by their coefficient profiles across perturbations (hierarchical, correlation distance) and each programme is
scored per perturbation by its mean coefficient. Gaussian fits use log-normalised expression (the MIMOSCA /
seed-002 practice); count families use raw counts with log library size as offset, so coefficients are log
fold changes either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError
from s3r.glm import GLMNet
from s3r.perturb_analysis import module_label, module_number, programme_label, programme_number
from s3r.perturb_design import (DROP_LABELS, as_counts, column_mean_var, covariate_matrix, gene_programmes, highly_variable_genes,
                                library_sizes, log_normalise, perturbation_design, programme_scores)
from s3r.perturb_simulate import cycle_genes, simulate_perturbseq, simulate_perturbseq_h5ad

__all__ = ["DROP_LABELS", "CELL_CYCLE_COVARIATES", "QC_COVARIATES", "PerturbSeqResult", "Screen", "alpha_performance", "analyse_screen",
           "as_counts", "column_mean_var", "covariate_matrix", "cycle_genes", "fit_perturbseq", "fit_perturbseq_h5ad", "gene_programmes",
           "highly_variable_genes", "library_sizes", "log_normalise", "perturbation_design", "plot_perturbseq", "programme_scores",
           "qc_covariates", "read_screen", "simulate_perturbseq", "simulate_perturbseq_h5ad", "write_perturbseq"]


@dataclass
class PerturbSeqResult:
    coef: pd.DataFrame  # perturbations × genes (W)
    covariate_coef: pd.DataFrame  # covariates × genes (M)
    intercept: pd.Series  # genes
    programmes: pd.Series  # gene → programme label P<n> (P0 = unmoved)
    programme_scores: pd.DataFrame  # perturbations × programmes
    model: GLMNet
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # genes × (deviance, deviance_explained, pseudo_r2, alpha)
    modules: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))  # perturbation → module M<n> (M0 = moves nothing)
    cells: pd.Index = field(default_factory=pd.Index)  # the cells fitted (unassigned ones dropped)


def fit_perturbseq(
    counts,
    obs: pd.DataFrame,
    *,
    perturbation_key: str,
    control: str = "control",
    covariates=(),
    gene_names=None,
    genes=None,
    n_top_genes: int = 2000,
    family: str = "gaussian",
    l1_ratio: float = 0.5,
    alpha: float | None = None,
    n_alphas: int = 20,
    eps: float = 1e-3,
    cv: int | None = None,
    selection: str = "min",
    standardize: bool = False,
    tol: float = 1e-6,
    dtype: str = "float64",
    n_programmes: int | None = None,
    n_modules: int | None = None,
    theta: float | None = None,
    device: str = "auto",
    random_state: int = 0,
    programme_threshold: float = 0.7,
    module_threshold: float | None = None,
    progress=None,
) -> PerturbSeqResult:
    """Fit all response genes at once; ``genes`` (names) overrides the highly-variable selection. ``progress``: a
    callable taking one line of text, told where the fit stands (a count-family screen runs for minutes).

    Sparse counts stay sparse from here to the solver (normalisation, gene selection, the gaussian Gram, count
    families in column blocks). Perturbations are clustered into modules by their profiles across genes, as
    genes into programmes by theirs across perturbations (``module_threshold`` defaults to the programme one).
    """
    counts = as_counts(counts)
    g = counts.shape[1]
    gene_names = [f"gene_{j + 1}" for j in range(g)] if gene_names is None else [str(x) for x in gene_names]
    if perturbation_key not in obs.columns:
        raise S3RInputError(f"perturbation column {perturbation_key!r} is not in .obs")
    D, pert_names, keep = perturbation_design(obs[perturbation_key], control)
    C, cov_names = covariate_matrix(obs.loc[keep] if not keep.all() else obs, covariates)
    counts = counts[keep] if not keep.all() else counts
    cols = _response_columns(counts, gene_names, genes, n_top_genes)
    Y, offset = _responses(counts, cols, family)
    X = np.hstack([D, C])
    pf = np.r_[np.ones(D.shape[1]), np.zeros(C.shape[1])]
    model = GLMNet(family, l1_ratio=l1_ratio, alpha=alpha, n_alphas=n_alphas, eps=eps, cv=cv, selection=selection, penalty_factor=pf,
                   standardize=standardize, theta=theta, tol=tol, dtype=dtype, device=device, random_state=random_state,
                   progress=progress)
    model.fit(X, Y, offset=offset)
    return _result(model, X, Y, offset, D.shape[1], pert_names, cov_names, [gene_names[j] for j in cols], pd.Index(obs.index[keep]),
                   n_programmes=n_programmes, n_modules=n_modules, programme_threshold=programme_threshold,
                   module_threshold=module_threshold)



def _response_columns(counts, gene_names, genes, n_top_genes: int) -> np.ndarray:
    """Columns of the response genes: the named ``genes``, else the ``n_top_genes`` highly variable ones."""
    if genes is None:
        return highly_variable_genes(counts, n_top_genes)
    pos = {name: j for j, name in enumerate(gene_names)}
    missing = [x for x in genes if x not in pos]
    if missing:
        raise S3RInputError(f"response gene(s) not found: {', '.join(missing[:5])}")
    return np.array([pos[x] for x in genes])


def _responses(counts, cols, family: str):
    """(Y, offset): log-normalised expression for the gaussian, raw counts with log library size as the offset
    for the count families; sparse stays sparse, and no column copy when every gene responds in order."""
    lib = library_sizes(counts)
    if np.any(lib <= 0):
        raise S3RInputError(f"{int(np.sum(lib <= 0))} cell(s) have no counts; filter empty cells first")
    every = len(cols) == counts.shape[1] and np.array_equal(cols, np.arange(counts.shape[1]))
    if family == "gaussian":
        Y = log_normalise(counts)
        return (Y if every else Y[:, cols]), None
    return (counts if every else counts[:, cols]), np.log(lib)


def _result(model, X, Y, offset, k: int, pert_names, cov_names, names, cells, *, n_programmes, n_modules, programme_threshold,
            module_threshold) -> PerturbSeqResult:
    """The fitted model's W (first ``k`` features) and M as tables, programmes and modules clustered on W, scores."""
    coef = np.atleast_2d(model.coef_)  # (genes, features)
    W = coef[:, :k].T
    labels = gene_programmes(W, n_programmes, threshold=programme_threshold)
    modules = gene_programmes(W.T, n_modules, threshold=programme_threshold if module_threshold is None else module_threshold)
    S, progs = programme_scores(W, labels)
    sc = model.scores(X, Y, offset)
    return PerturbSeqResult(
        coef=pd.DataFrame(W, index=pert_names, columns=names),
        covariate_coef=pd.DataFrame(coef[:, k:].T, index=cov_names, columns=names),
        intercept=pd.Series(np.atleast_1d(model.intercept_), index=names, name="intercept"),
        programmes=pd.Series([programme_label(v) for v in labels], index=names, name="programme"),
        programme_scores=pd.DataFrame(S, index=pert_names, columns=[programme_label(p) for p in progs]),
        model=model,
        scores=pd.DataFrame({"deviance": np.atleast_1d(sc["deviance"]), "deviance_explained": np.atleast_1d(sc["deviance_explained"]),
                             "pseudo_r2": np.atleast_1d(sc["pseudo_r2"]), "alpha": np.atleast_1d(model.alpha_)}, index=names),
        modules=pd.Series([module_label(m) for m in modules], index=pert_names, name="module"),
        cells=cells,
    )



# -- workflow mode: one AnnData file in, tables and heatmaps out ----------------------------------------------
QC_COVARIATES = ("total_counts", "log1p_total_counts", "pct_counts_mt")
CELL_CYCLE_COVARIATES = ("S_score", "G2M_score")


def qc_covariates(counts, gene_names, obs: pd.DataFrame, names) -> pd.DataFrame:
    """``obs`` with the scanpy-named QC covariates among ``names`` added when .obs lacks them.

    total_counts and log1p_total_counts (the log library size) from the counts; pct_counts_mt from genes named
    MT-* / mt-*, so a user who has not run ``sc.pp.calculate_qc_metrics`` gets the covariates of seed 002.
    """
    wanted = [c for c in names if c in QC_COVARIATES and c not in obs.columns]
    if not wanted:
        return obs
    obs = obs.copy()
    total = library_sizes(counts)
    for name in wanted:
        if name == "total_counts":
            obs[name] = total
        elif name == "log1p_total_counts":
            obs[name] = np.log1p(total)
        else:
            mito = np.array([str(g).upper().startswith("MT-") for g in gene_names])
            if not mito.any():
                raise S3RInputError("covariate 'pct_counts_mt' is not an .obs column and no gene is named MT-*; add the column or drop the covariate")
            mt = library_sizes(counts[:, np.flatnonzero(mito)])
            obs[name] = 100.0 * mt / np.where(total > 0, total, 1.0)
    return obs


@dataclass
class Screen:
    """One screen read from an AnnData file: raw counts (CSR when stored sparse), .obs with the computed
    covariates, gene names, and where it came from (for messages)."""

    counts: object
    obs: pd.DataFrame
    gene_names: list
    path: Path

    def log_expression(self):
        """Log-normalised expression of every gene and cell (sparse stays sparse): what scores are built on."""
        return log_normalise(self.counts)


def read_screen(path, *, perturbation_key: str = "perturbation", covariates=(), layer: str | None = None,
                s_genes=None, g2m_genes=None, random_state: int = 0) -> Screen:
    """Read a screen and add the covariates .obs lacks: QC ones (:func:`qc_covariates`) and, from user gene
    lists, ``S_score``/``G2M_score`` (scanpy's ``score_genes_cell_cycle`` on log-normalised expression)."""
    import anndata

    from s3r.preprocess import holds_counts

    path = Path(path)
    if not path.is_file():
        raise S3RInputError(f"{path}: h5ad file not found; check the path")
    adata = anndata.read_h5ad(path)
    if layer is not None and layer not in adata.layers:
        raise S3RInputError(f"{path}: layer {layer!r} not found; layers are {', '.join(adata.layers.keys()) or 'none'}")
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None or not holds_counts(matrix):
        where = ".X" if layer is None else f".layers[{layer!r}]"
        raise S3RInputError(f"{path}: {where} does not hold raw counts (non-negative integers); name the counts layer (column 'layer')")
    if perturbation_key not in adata.obs.columns:
        raise S3RInputError(f"{path}: perturbation column {perturbation_key!r} is not in .obs (columns: {', '.join(map(str, list(adata.obs.columns)[:12]))})")
    gene_names = [str(g) for g in adata.var_names]
    counts = as_counts(matrix)
    try:
        obs = qc_covariates(counts, gene_names, adata.obs, covariates)
        cycle = [c for c in covariates if c in CELL_CYCLE_COVARIATES and c not in obs.columns]
        if cycle:
            if not s_genes or not g2m_genes:
                raise S3RInputError(f"covariate {cycle[0]!r} is not an .obs column; give S- and G2M-phase gene lists (sheet columns 's_genes', 'g2m_genes') to compute it, or drop it")
            from s3r.perturb_analysis import cell_cycle_scores

            cc = cell_cycle_scores(log_normalise(counts), gene_names, s_genes, g2m_genes, random_state=random_state)
            obs = obs.copy()
            for c in ("S_score", "G2M_score", "phase"):
                if c not in obs.columns:
                    obs[c] = cc[c].to_numpy()
    except S3RInputError as err:
        raise S3RInputError(f"{path}: {err}") from None
    return Screen(counts, obs, gene_names, path)


def fit_perturbseq_h5ad(
    path,
    *,
    perturbation_key: str = "perturbation",
    control: str = "control",
    covariates=(),
    layer: str | None = None,
    genes=None,
    s_genes=None,
    g2m_genes=None,
    **options,
) -> PerturbSeqResult:
    """:func:`fit_perturbseq` on an AnnData file (:func:`read_screen`): counts from ``.X`` or ``layer`` (raw
    counts: the gaussian fit log-normalises them itself, count families use them as they are).
    ``options``: the keyword arguments of :func:`fit_perturbseq` (family, l1_ratio, alpha, cv, ...)."""
    screen = read_screen(path, perturbation_key=perturbation_key, covariates=covariates, layer=layer, s_genes=s_genes,
                         g2m_genes=g2m_genes, random_state=int(options.get("random_state", 0)))
    try:
        return fit_perturbseq(screen.counts, screen.obs, perturbation_key=perturbation_key, control=control, covariates=list(covariates),
                              gene_names=screen.gene_names, genes=genes, **options)
    except S3RInputError as err:
        raise S3RInputError(f"{path}: {err}") from None


def alpha_performance(model: GLMNet) -> pd.DataFrame:
    """The seed-002 penalty-selection view as a table: per path point, held-out deviance explained (R² for the
    gaussian; quartiles over genes), training deviance explained, mean number of non-zero coefficients and how
    many genes CV chose there. ``lambda_ratio`` = λ/λ_max (every gene's path has the same ratios)."""
    lam = np.asarray(model.alphas_)
    K, B = lam.shape
    chosen = np.bincount(np.atleast_1d(model.alpha_index_), minlength=K)
    held = model.cv_deviance_explained_
    q = (lambda a, p: np.quantile(a, p, axis=1)) if held is not None else None
    pf = np.asarray(model.penalty_factor if model.penalty_factor is not None else np.ones(model.coef_path_.shape[-1])) > 0
    table = pd.DataFrame({
        "path_index": np.arange(K),
        "lambda_ratio": np.median(lam / np.where(lam[:1] > 0, lam[:1], 1.0), axis=1),
        "lambda_median": np.median(lam, axis=1),
        "heldout_deviance_explained_median": q(held, 0.5) if held is not None else np.nan,
        "heldout_deviance_explained_q25": q(held, 0.25) if held is not None else np.nan,
        "heldout_deviance_explained_q75": q(held, 0.75) if held is not None else np.nan,
        "train_deviance_explained_median": np.median(model.deviance_explained_path_, axis=1),
        "mean_nonzero_effects": (model.coef_path_[:, :, pf] != 0).sum(-1).mean(1),
        "n_genes_chosen": chosen,
    })
    return table


def analyse_screen(result: PerturbSeqResult, screen: "Screen", *, perturbation_key: str, control: str = "control", gmt=None,
                   ctrl_size: int = 50, random_state: int = 0, pool: str = "unmoved") -> dict[str, pd.DataFrame]:
    """Seed 002 after the fit: per-cell programme scores (scanpy's score_genes on log-normalised expression of
    all genes), their mean per perturbation minus control with Welch's t-test and BH, enrichment of programmes
    in a GMT's gene sets (hypergeometric, tested genes as universe), and the penalty-selection table."""
    from s3r.perturb_analysis import enrichment, programme_cell_scores, programme_tests, read_gmt

    L = screen.log_expression()
    cells = programme_cell_scores(L, screen.gene_names, result.programmes, ctrl_size=ctrl_size, random_state=random_state, pool=pool)
    cells.index = screen.obs.index
    labels = screen.obs[perturbation_key].astype(str)
    fitted = labels.isin(list(result.coef.index) + [control])
    cells.insert(0, "perturbation", labels.where(fitted))
    for c in ("S_score", "G2M_score", "phase"):
        if c in screen.obs.columns:
            cells[c] = screen.obs[c].to_numpy()
    progs = [c for c in cells.columns if c.startswith("P") and c[1:].isdigit()]
    tests = programme_tests(cells[progs], cells["perturbation"], control) if progs else pd.DataFrame(
        columns=["perturbation", "programme", "n_cells", "n_control", "mean_difference", "t", "p_value", "p_adj"])
    enr = enrichment(result.programmes, read_gmt(gmt)) if gmt else enrichment(result.programmes, {})
    return {"cell_scores": cells, "programme_tests": tests, "enrichment": enr, "alpha_performance": alpha_performance(result.model)}


def write_perturbseq(result: PerturbSeqResult, *, coefficients, programmes, programme_scores, gene_scores=None, summary=None, extra=None,
                     covariate_coefficients=None, modules=None, analysis=None, cell_scores=None, programme_tests=None, enrichment=None,
                     alpha_performance=None) -> None:
    """Tables (tab-separated, atomic): W (perturbations × genes), M (covariates × genes, with the intercept),
    gene → programme, perturbation → module, perturbations × programmes mean coefficient, per-gene fit scores;
    from :func:`analyse_screen`: per-cell scores, programme tests, enrichment, penalty selection; a JSON summary."""
    from s3r.io import write_csv, write_json

    write_csv(result.coef.rename_axis("perturbation"), coefficients, sep="\t")
    write_csv(result.programmes.rename_axis("gene").to_frame(), programmes, sep="\t")
    write_csv(result.programme_scores.rename_axis("perturbation"), programme_scores, sep="\t")
    if covariate_coefficients is not None:
        M = pd.concat([result.intercept.to_frame().T.rename(index={"intercept": "(intercept)"}), result.covariate_coef])
        write_csv(M.rename_axis("covariate"), covariate_coefficients, sep="\t")
    if modules is not None:
        write_csv(result.modules.rename_axis("perturbation").to_frame(), modules, sep="\t")
    if gene_scores is not None:
        write_csv(result.scores.rename_axis("gene"), gene_scores, sep="\t")
    for key, path in (("cell_scores", cell_scores), ("programme_tests", programme_tests), ("enrichment", enrichment),
                      ("alpha_performance", alpha_performance)):
        if path is not None:
            if analysis is None:
                raise S3RInputError(f"{key} requested without an analysis; call analyse_screen first")
            table = analysis[key]
            write_csv(table.rename_axis("cell") if key == "cell_scores" else table, path, sep="\t", index=key == "cell_scores",
                      float_format="%.6g" if key == "cell_scores" else None)
    if summary is not None:
        model = result.model
        counts = result.programmes.value_counts()
        counts = counts.loc[sorted(counts.index, key=programme_number)]
        info = {
            "n_perturbations": int(result.coef.shape[0]),
            "n_genes": int(result.coef.shape[1]),
            "n_cells": int(len(result.cells)),
            "perturbations": list(result.coef.index),
            "covariates": list(result.covariate_coef.index),
            "programme_sizes": {str(k): int(v) for k, v in counts.items()},
            "module_sizes": {str(k): int(v) for k, v in sorted(result.modules.value_counts().items(), key=lambda kv: module_number(kv[0]))},
            "nonzero_fraction": float(np.mean(result.coef.to_numpy() != 0)),
            "median_deviance_explained": float(np.median(result.scores["deviance_explained"])),
            "alpha_median": float(np.median(np.atleast_1d(model.alpha_))),
            "model": {k: v for k, v in model.get_params().items() if k not in ("penalty_factor", "progress")},
            "report": model.report_,
        }
        if analysis is not None and len(analysis["programme_tests"]):
            t = analysis["programme_tests"]
            info["significant_programme_shifts"] = int((t["p_adj"] < 0.05).sum())
        write_json({**info, **(extra or {})}, summary)


def plot_perturbseq(coef: pd.DataFrame, programmes: pd.Series, programme_scores: pd.DataFrame, *, coefficients_png, scores_png,
                    title: str = "") -> None:
    """Clustered heatmaps: perturbations × genes (genes grouped by programme) and perturbations × programmes
    (the :class:`PerturbSeqResult` tables, or the same read back from the TSVs :func:`write_perturbseq` wrote)."""
    from s3r.report.programmes import clustered_heatmap

    if coefficients_png is not None:
        clustered_heatmap(coef, coefficients_png, title=f"{title} perturbation effects (genes grouped by programme)".strip(),
                          col_clusters=pd.Series(programmes).reindex(coef.columns).tolist())
    if programme_scores.shape[1] == 0:  # nothing moved: an empty-but-valid figure rather than a failed job
        programme_scores = pd.DataFrame(np.zeros((programme_scores.shape[0], 1)), index=programme_scores.index, columns=["no programme"])
    clustered_heatmap(programme_scores, scores_png, title=f"{title} programme scores (mean coefficient)".strip())
