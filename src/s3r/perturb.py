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

DROP_LABELS = ("unassigned", "multiplet", "nan", "")


def perturbation_design(labels, control: str = "control", drop=DROP_LABELS) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(D (n_kept, k), perturbation names, kept-cell mask): cells labelled ``drop`` are left out, control is the baseline."""
    lab = pd.Series(labels).astype(str).to_numpy()
    keep = ~np.isin(lab, [str(d) for d in drop])
    levels = sorted(set(lab[keep]))
    if control not in levels:
        raise S3RInputError(f"control level {control!r} not found among perturbation labels ({', '.join(levels[:8])}{'…' if len(levels) > 8 else ''}); pass --control")
    names = [lv for lv in levels if lv != control]
    if not names:
        raise S3RInputError("only the control level is present; nothing to estimate")
    idx = {lv: j for j, lv in enumerate(names)}
    kept = lab[keep]
    D = np.zeros((kept.shape[0], len(names)))
    rows = np.flatnonzero(kept != control)
    D[rows, [idx[v] for v in kept[rows]]] = 1.0
    return D, names, keep


def covariate_matrix(obs: pd.DataFrame, columns) -> tuple[np.ndarray, list[str]]:
    """Numeric columns as is; others one-hot with the first level dropped (named ``col=level``)."""
    blocks, names = [], []
    for col in columns:
        if col not in obs.columns:
            raise S3RInputError(f"covariate {col!r} is not an .obs column (columns: {', '.join(map(str, list(obs.columns)[:12]))})")
        s = obs[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            v = s.to_numpy(dtype=np.float64)
            if not np.all(np.isfinite(v)):
                raise S3RInputError(f"covariate {col!r} has a missing or non-finite value at cell {int(np.flatnonzero(~np.isfinite(v))[0])}; impute or drop those cells")
            blocks.append(v[:, None])
            names.append(str(col))
        else:
            cat = pd.Categorical(s.astype(str))
            for lv in cat.categories[1:]:
                blocks.append((cat == lv).astype(np.float64)[:, None])
                names.append(f"{col}={lv}")
    return (np.hstack(blocks) if blocks else np.zeros((len(obs), 0))), names


def log_normalise(counts: np.ndarray, target_sum: float = 1e4) -> np.ndarray:
    lib = counts.sum(1, keepdims=True)
    return np.log1p(counts / np.where(lib > 0, lib, 1) * target_sum)


def highly_variable_genes(counts: np.ndarray, n_top: int = 2000, n_bins: int = 20) -> np.ndarray:
    """Indices of the ``n_top`` genes with the largest dispersion z-score within mean bins (Seurat-style)."""
    L = log_normalise(counts)
    mean = L.mean(0)
    var = L.var(0, ddof=1) if L.shape[0] > 1 else np.zeros(L.shape[1])
    disp = np.log(np.where(mean > 0, var / np.where(mean > 0, mean, 1), 1e-12) + 1e-12)
    bins = pd.qcut(pd.Series(mean).rank(method="first"), q=min(n_bins, max(1, L.shape[1])), labels=False).to_numpy()
    z = np.zeros_like(disp)
    for b in np.unique(bins):
        m = bins == b
        sd = disp[m].std()
        z[m] = (disp[m] - disp[m].mean()) / (sd if sd > 0 else 1.0)
    z[mean == 0] = -np.inf
    return np.sort(np.argsort(-z, kind="stable")[: min(n_top, L.shape[1])])


def gene_programmes(coef: np.ndarray, n_programmes: int | None = None, *, threshold: float = 0.7, method: str = "average") -> np.ndarray:
    """Programme label (1..) per gene from its coefficient profile across perturbations (columns of ``coef`` (k, g)).

    Correlation distance groups genes moved together by the same perturbations whatever their effect size;
    genes no perturbation moves (all-zero profiles) form programme 0.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    C = np.asarray(coef, dtype=np.float64).T  # genes × perturbations
    labels = np.zeros(C.shape[0], dtype=np.int64)
    moved = np.any(C != 0, axis=1) & (C.std(1) > 0)
    if moved.sum() < 2:
        labels[moved] = 1
        return labels
    Z = linkage(C[moved], method=method, metric="correlation")
    if n_programmes:
        lab = fcluster(Z, t=n_programmes, criterion="maxclust")
    else:
        lab = fcluster(Z, t=threshold, criterion="distance")
    labels[moved] = lab
    return labels


def programme_scores(coef: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Mean coefficient per (perturbation, programme); programme 0 (unmoved genes) is left out."""
    progs = [int(p) for p in np.unique(labels) if p != 0]
    return np.stack([coef[:, labels == p].mean(1) for p in progs], 1) if progs else np.zeros((coef.shape[0], 0)), progs


@dataclass
class PerturbSeqResult:
    coef: pd.DataFrame  # perturbations × genes
    covariate_coef: pd.DataFrame  # covariates × genes
    intercept: pd.Series  # genes
    programmes: pd.Series  # gene → programme (0 = unmoved)
    programme_scores: pd.DataFrame  # perturbations × programmes
    model: GLMNet
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # genes × (deviance, deviance_explained, pseudo_r2, alpha)


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
    cv: int | None = None,
    n_programmes: int | None = None,
    theta: float | None = None,
    device: str = "auto",
    random_state: int = 0,
    programme_threshold: float = 0.7,
) -> PerturbSeqResult:
    """Fit all response genes at once; ``genes`` (names) overrides the highly-variable selection."""
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts, dtype=np.float64)
    n, g = counts.shape
    gene_names = [f"gene_{j + 1}" for j in range(g)] if gene_names is None else [str(x) for x in gene_names]
    if perturbation_key not in obs.columns:
        raise S3RInputError(f"perturbation column {perturbation_key!r} is not in .obs")
    D, pert_names, keep = perturbation_design(obs[perturbation_key], control)
    C, cov_names = covariate_matrix(obs.loc[keep] if not keep.all() else obs, covariates)
    counts = counts[keep]
    if genes is not None:
        pos = {name: j for j, name in enumerate(gene_names)}
        missing = [x for x in genes if x not in pos]
        if missing:
            raise S3RInputError(f"response gene(s) not found: {', '.join(missing[:5])}")
        cols = np.array([pos[x] for x in genes])
    else:
        cols = highly_variable_genes(counts, n_top_genes)
    lib = counts.sum(1)
    if np.any(lib <= 0):
        raise S3RInputError(f"{int(np.sum(lib <= 0))} cell(s) have no counts; filter empty cells first")
    offset = None
    if family == "gaussian":
        Y = log_normalise(counts)[:, cols]
    else:
        Y = counts[:, cols]
        offset = np.log(lib)
    X = np.hstack([D, C])
    pf = np.r_[np.ones(D.shape[1]), np.zeros(C.shape[1])]
    model = GLMNet(family, l1_ratio=l1_ratio, alpha=alpha, n_alphas=n_alphas, cv=cv, penalty_factor=pf,
                   standardize=False, theta=theta, device=device, random_state=random_state)
    model.fit(X, Y, offset=offset)
    coef = np.atleast_2d(model.coef_)  # (genes, features)
    names = [gene_names[j] for j in cols]
    W = coef[:, : D.shape[1]].T
    labels = gene_programmes(W, n_programmes, threshold=programme_threshold)
    S, progs = programme_scores(W, labels)
    sc = model.scores(X, Y, offset)
    return PerturbSeqResult(
        coef=pd.DataFrame(W, index=pert_names, columns=names),
        covariate_coef=pd.DataFrame(coef[:, D.shape[1] :].T, index=cov_names, columns=names),
        intercept=pd.Series(np.atleast_1d(model.intercept_), index=names, name="intercept"),
        programmes=pd.Series(labels, index=names, name="programme"),
        programme_scores=pd.DataFrame(S, index=pert_names, columns=[f"programme_{p}" for p in progs]),
        model=model,
        scores=pd.DataFrame({"deviance": np.atleast_1d(sc["deviance"]), "deviance_explained": np.atleast_1d(sc["deviance_explained"]),
                             "pseudo_r2": np.atleast_1d(sc["pseudo_r2"]), "alpha": np.atleast_1d(model.alpha_)}, index=names),
    )


def simulate_perturbseq(n_cells=2000, n_genes=200, n_perturbations=10, n_programmes=4, *, effect=1.0, theta=5.0, n_batches=2, seed=0):
    """Counts with planted effects: each perturbation shifts one programme's genes by ±``effect`` (log scale).

    Programmes occupy the first half of the genes; the second half is unaffected and highly expressed, so the
    library size (the count families' offset) is not itself moved by the perturbations, as in a real transcriptome.

    Returns (counts (n, g), obs DataFrame with ``perturbation``, ``batch``, ``pct_mito``, ``log_total``),
    true log fold changes (k, g) and the planted programme of each gene (0 = none).
    """
    rng = np.random.default_rng(seed)
    labels = np.array(["control"] + [f"P{j + 1}" for j in range(n_perturbations)])
    pert = rng.integers(0, n_perturbations + 1, n_cells)
    prog_of_gene = np.zeros(n_genes, dtype=np.int64)
    per = max(1, n_genes // (2 * n_programmes))
    for q in range(n_programmes):
        prog_of_gene[q * per : (q + 1) * per] = q + 1
    effects = np.zeros((n_perturbations, n_genes))
    for j in range(n_perturbations):
        q = j % n_programmes + 1
        effects[j, prog_of_gene == q] = effect * (1 if (j // n_programmes) % 2 == 0 else -1)
    batch = rng.integers(0, n_batches, n_cells)
    batch_eff = rng.normal(0, 0.3, (n_batches, n_genes))
    base = rng.normal(np.log(2.0), 0.5, n_genes)
    base[n_genes // 2 :] += np.log(20.0)  # unaffected, well-expressed genes carry the library size
    size = rng.lognormal(np.log(3000), 0.3, n_cells) / 3000
    log_mu = base[None] + batch_eff[batch] + np.log(size)[:, None]
    has = pert > 0
    log_mu[has] += effects[pert[has] - 1]
    mu = np.exp(log_mu)
    counts = rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float64)
    obs = pd.DataFrame({
        "perturbation": labels[pert],
        "batch": pd.Categorical([f"b{b}" for b in batch]),
        "pct_mito": rng.uniform(1, 8, n_cells),
        "log_total": np.log(counts.sum(1) + 1),
    }, index=[f"cell_{i + 1}" for i in range(n_cells)])
    return counts, obs, effects, prog_of_gene


# -- workflow mode: one AnnData file in, tables and heatmaps out ----------------------------------------------
QC_COVARIATES = ("total_counts", "log1p_total_counts", "pct_counts_mt")


def qc_covariates(counts, gene_names, obs: pd.DataFrame, names) -> pd.DataFrame:
    """``obs`` with the scanpy-named QC covariates among ``names`` added when .obs lacks them.

    total_counts and log1p_total_counts from the counts; pct_counts_mt from genes named MT-* / mt-*, so a user
    who has not run ``sc.pp.calculate_qc_metrics`` gets the same covariates the seed-002 analysis used.
    """
    wanted = [c for c in names if c in QC_COVARIATES and c not in obs.columns]
    if not wanted:
        return obs
    obs = obs.copy()
    total = np.asarray(counts.sum(1)).ravel().astype(np.float64)
    for name in wanted:
        if name == "total_counts":
            obs[name] = total
        elif name == "log1p_total_counts":
            obs[name] = np.log1p(total)
        else:
            mito = np.array([str(g).upper().startswith("MT-") for g in gene_names])
            if not mito.any():
                raise S3RInputError("covariate 'pct_counts_mt' is not an .obs column and no gene is named MT-*; add the column or drop the covariate")
            mt = np.asarray(counts[:, np.flatnonzero(mito)].sum(1)).ravel()
            obs[name] = 100.0 * mt / np.where(total > 0, total, 1.0)
    return obs


def fit_perturbseq_h5ad(
    path,
    *,
    perturbation_key: str = "perturbation",
    control: str = "control",
    covariates=(),
    layer: str | None = None,
    genes=None,
    **options,
) -> PerturbSeqResult:
    """:func:`fit_perturbseq` on an AnnData file: counts from ``.X`` or ``layer`` (raw counts: the gaussian fit
    log-normalises them itself, count families use them as they are), labels and covariates from ``.obs``.
    ``options``: the keyword arguments of :func:`fit_perturbseq` (family, l1_ratio, alpha, cv, ...)."""
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
    obs = qc_covariates(matrix, gene_names, adata.obs, covariates)
    try:
        return fit_perturbseq(matrix, obs, perturbation_key=perturbation_key, control=control, covariates=list(covariates),
                              gene_names=gene_names, genes=genes, **options)
    except S3RInputError as err:
        raise S3RInputError(f"{path}: {err}") from None


def write_perturbseq(result: PerturbSeqResult, *, coefficients, programmes, programme_scores, gene_scores=None, summary=None, extra=None) -> None:
    """Tables (tab-separated, atomic): perturbations × genes coefficients, gene → programme, perturbations ×
    programmes scores, per-gene fit scores; and a JSON summary of the fit."""
    from s3r.io import write_csv, write_json

    write_csv(result.coef.rename_axis("perturbation"), coefficients, sep="\t")
    write_csv(result.programmes.rename_axis("gene").to_frame(), programmes, sep="\t")
    write_csv(result.programme_scores.rename_axis("perturbation"), programme_scores, sep="\t")
    if gene_scores is not None:
        write_csv(result.scores.rename_axis("gene"), gene_scores, sep="\t")
    if summary is not None:
        model = result.model
        counts = result.programmes.value_counts().sort_index()
        write_json({
            "n_perturbations": int(result.coef.shape[0]),
            "n_genes": int(result.coef.shape[1]),
            "perturbations": list(result.coef.index),
            "covariates": list(result.covariate_coef.index),
            "programme_sizes": {str(k): int(v) for k, v in counts.items()},
            "nonzero_fraction": float(np.mean(result.coef.to_numpy() != 0)),
            "median_deviance_explained": float(np.median(result.scores["deviance_explained"])),
            "alpha_median": float(np.median(np.atleast_1d(model.alpha_))),
            "model": {k: v for k, v in model.get_params().items() if k != "penalty_factor"},
            "report": model.report_,
            **(extra or {}),
        }, summary)


def plot_perturbseq(coef: pd.DataFrame, programmes: pd.Series, programme_scores: pd.DataFrame, *, coefficients_png, scores_png,
                    title: str = "") -> None:
    """Clustered heatmaps: perturbations × genes (genes grouped by programme) and perturbations × programmes
    (the :class:`PerturbSeqResult` tables, or the same read back from the TSVs :func:`write_perturbseq` wrote)."""
    from s3r.report.programmes import clustered_heatmap

    clustered_heatmap(coef, coefficients_png, title=f"{title} perturbation effects (genes grouped by programme)".strip(),
                      col_clusters=pd.Series(programmes).reindex(coef.columns).tolist())
    if programme_scores.shape[1] == 0:  # nothing moved: an empty-but-valid figure rather than a failed job
        programme_scores = pd.DataFrame(np.zeros((programme_scores.shape[0], 1)), index=programme_scores.index, columns=["no programme"])
    clustered_heatmap(programme_scores, scores_png, title=f"{title} programme scores (mean coefficient)".strip())


def simulate_perturbseq_h5ad(path, *, n_cells=600, n_genes=200, n_perturbations=6, n_programmes=3, effect=1.0, theta=5.0,
                             n_batches=2, seed=0) -> None:
    """A perturb-seq AnnData file with planted effects (the workflow demo): raw counts in .X; .obs holds
    ``perturbation``, ``batch``, ``pct_counts_mt``, ``total_counts`` and cell-cycle scores (``S_score``,
    ``G2M_score``; noise here); the truth in ``.varm['true_effects']`` (genes × perturbations) and
    ``.var['true_programme']``."""
    import anndata

    from s3r.io import atomic_path

    counts, obs, effects, prog = simulate_perturbseq(n_cells, n_genes, n_perturbations, n_programmes, effect=effect, theta=theta,
                                                     n_batches=n_batches, seed=seed)
    rng = np.random.default_rng([seed, 1])
    obs = pd.DataFrame({
        "perturbation": pd.Categorical(obs["perturbation"]),
        "batch": obs["batch"],
        "pct_counts_mt": obs["pct_mito"].to_numpy(),
        "total_counts": counts.sum(1),
        "S_score": rng.normal(0, 0.2, n_cells),
        "G2M_score": rng.normal(0, 0.2, n_cells),
    }, index=obs.index)
    genes = [f"gene_{j + 1}" for j in range(n_genes)]
    adata = anndata.AnnData(
        X=counts.astype(np.float32), obs=obs, var=pd.DataFrame({"true_programme": prog}, index=genes),
        varm={"true_effects": effects.T}, uns={"perturbations": [f"P{j + 1}" for j in range(n_perturbations)]},
    )
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
