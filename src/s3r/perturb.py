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
import scipy.sparse as sp

from s3r.errors import S3RInputError
from s3r.glm import GLMNet
from s3r.perturb_analysis import programme_label, programme_number

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


def as_counts(counts):
    """float64 CSR for sparse input (kept sparse: memory linear in non-zeros), float64 array otherwise."""
    return sp.csr_matrix(counts, dtype=np.float64) if sp.issparse(counts) else np.asarray(counts, dtype=np.float64)


def library_sizes(counts) -> np.ndarray:
    return np.asarray(counts.sum(1), dtype=np.float64).ravel()


def log_normalise(counts, target_sum: float = 1e4):
    """log1p(counts / library size · target_sum); sparse in, sparse out (zeros stay zeros)."""
    lib = library_sizes(counts)
    scale = target_sum / np.where(lib > 0, lib, 1)
    if sp.issparse(counts):  # one copy: scale and log1p the stored values in place
        out = sp.csr_matrix(counts, dtype=np.float64, copy=True)
        out.data *= np.repeat(scale, np.diff(out.indptr))
        np.log1p(out.data, out=out.data)
        return out
    return np.log1p(np.asarray(counts, dtype=np.float64) * scale[:, None])


def column_mean_var(M, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance of a dense or sparse matrix without densifying it."""
    n = M.shape[0]
    if sp.issparse(M):
        mean = np.asarray(M.mean(0)).ravel()
        sq = np.asarray(M.multiply(M).mean(0)).ravel()
        var = np.maximum(sq - mean * mean, 0.0) * (n / max(n - ddof, 1))
        return mean, var
    M = np.asarray(M, dtype=np.float64)
    return M.mean(0), (M.var(0, ddof=ddof) if n > ddof else np.zeros(M.shape[1]))


def highly_variable_genes(counts, n_top: int = 2000, n_bins: int = 20) -> np.ndarray:
    """Indices of the ``n_top`` genes with the largest dispersion z-score within mean bins (Seurat-style)."""
    L = log_normalise(counts)
    mean, var = column_mean_var(L, ddof=1)
    # dense and sparse sums differ in the last bits; rounding keeps ranks and bins (so the selection) identical
    mean, var = np.round(mean, 10), np.round(var, 10)
    if L.shape[0] <= 1:
        var = np.zeros(L.shape[1])
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
    coef: pd.DataFrame  # perturbations × genes (W)
    covariate_coef: pd.DataFrame  # covariates × genes (M)
    intercept: pd.Series  # genes
    programmes: pd.Series  # gene → programme label P<n> (P0 = unmoved)
    programme_scores: pd.DataFrame  # perturbations × programmes
    model: GLMNet
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # genes × (deviance, deviance_explained, pseudo_r2, alpha)
    modules: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.int64))  # perturbation → module (0 = moves nothing)
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
) -> PerturbSeqResult:
    """Fit all response genes at once; ``genes`` (names) overrides the highly-variable selection.

    Sparse counts stay sparse from here to the solver (normalisation, gene selection, the gaussian Gram, count
    families in column blocks). Perturbations are clustered into modules by their profiles across genes, as
    genes into programmes by theirs across perturbations (``module_threshold`` defaults to the programme one).
    """
    counts = as_counts(counts)
    n, g = counts.shape
    gene_names = [f"gene_{j + 1}" for j in range(g)] if gene_names is None else [str(x) for x in gene_names]
    if perturbation_key not in obs.columns:
        raise S3RInputError(f"perturbation column {perturbation_key!r} is not in .obs")
    D, pert_names, keep = perturbation_design(obs[perturbation_key], control)
    C, cov_names = covariate_matrix(obs.loc[keep] if not keep.all() else obs, covariates)
    counts = counts[keep] if not keep.all() else counts
    if genes is not None:
        pos = {name: j for j, name in enumerate(gene_names)}
        missing = [x for x in genes if x not in pos]
        if missing:
            raise S3RInputError(f"response gene(s) not found: {', '.join(missing[:5])}")
        cols = np.array([pos[x] for x in genes])
    else:
        cols = highly_variable_genes(counts, n_top_genes)
    lib = library_sizes(counts)
    if np.any(lib <= 0):
        raise S3RInputError(f"{int(np.sum(lib <= 0))} cell(s) have no counts; filter empty cells first")
    offset = None
    every = len(cols) == g and np.array_equal(cols, np.arange(g))  # all genes, in order: no column copy
    if family == "gaussian":
        Y = log_normalise(counts)
        Y = Y if every else Y[:, cols]
    else:
        Y = counts if every else counts[:, cols]
        offset = np.log(lib)
    X = np.hstack([D, C])
    pf = np.r_[np.ones(D.shape[1]), np.zeros(C.shape[1])]
    model = GLMNet(family, l1_ratio=l1_ratio, alpha=alpha, n_alphas=n_alphas, eps=eps, cv=cv, selection=selection, penalty_factor=pf,
                   standardize=standardize, theta=theta, tol=tol, dtype=dtype, device=device, random_state=random_state)
    model.fit(X, Y, offset=offset)
    coef = np.atleast_2d(model.coef_)  # (genes, features)
    names = [gene_names[j] for j in cols]
    W = coef[:, : D.shape[1]].T
    labels = gene_programmes(W, n_programmes, threshold=programme_threshold)
    modules = gene_programmes(W.T, n_modules, threshold=programme_threshold if module_threshold is None else module_threshold)
    S, progs = programme_scores(W, labels)
    sc = model.scores(X, Y, offset)
    return PerturbSeqResult(
        coef=pd.DataFrame(W, index=pert_names, columns=names),
        covariate_coef=pd.DataFrame(coef[:, D.shape[1] :].T, index=cov_names, columns=names),
        intercept=pd.Series(np.atleast_1d(model.intercept_), index=names, name="intercept"),
        programmes=pd.Series([programme_label(v) for v in labels], index=names, name="programme"),
        programme_scores=pd.DataFrame(S, index=pert_names, columns=[programme_label(p) for p in progs]),
        model=model,
        scores=pd.DataFrame({"deviance": np.atleast_1d(sc["deviance"]), "deviance_explained": np.atleast_1d(sc["deviance_explained"]),
                             "pseudo_r2": np.atleast_1d(sc["pseudo_r2"]), "alpha": np.atleast_1d(model.alpha_)}, index=names),
        modules=pd.Series(modules, index=pert_names, name="module"),
        cells=pd.Index(obs.index[keep]),
    )


def simulate_perturbseq(n_cells=2000, n_genes=200, n_perturbations=10, n_programmes=4, *, effect=1.0, theta=5.0, n_batches=2, seed=0,
                        cell_cycle: float = 0.0, n_cycle_genes: int = 10):
    """Counts with planted effects: each perturbation shifts one programme's genes by ±``effect`` (log scale).

    Programmes occupy the first half of the genes; the second half is unaffected and highly expressed, so the
    library size (the count families' offset) is not itself moved by the perturbations, as in a real transcriptome.

    ``cell_cycle`` > 0 adds a cell cycle: each cell's S and G2M activities (uniform in [0, 1], from their own
    random stream, so the rest of the draw is unchanged) raise ``n_cycle_genes`` S genes and as many G2M genes
    of the unaffected half by up to ``cell_cycle`` on the log scale; ``obs`` then holds the true activities
    (``true_S``, ``true_G2M``).

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
    if cell_cycle > 0:
        s_idx, g_idx = cycle_genes(n_genes, n_cycle_genes)
        crng = np.random.default_rng([seed, 2])
        act = crng.uniform(0, 1, (n_cells, 2))
        log_mu[:, s_idx] += cell_cycle * act[:, :1]
        log_mu[:, g_idx] += cell_cycle * act[:, 1:]
    mu = np.exp(log_mu)
    counts = rng.negative_binomial(theta, theta / (theta + mu)).astype(np.float64)
    obs = pd.DataFrame({
        "perturbation": labels[pert],
        "batch": pd.Categorical([f"b{b}" for b in batch]),
        "pct_mito": rng.uniform(1, 8, n_cells),
        "log_total": np.log(counts.sum(1) + 1),
    }, index=[f"cell_{i + 1}" for i in range(n_cells)])
    if cell_cycle > 0:
        obs["true_S"], obs["true_G2M"] = act[:, 0], act[:, 1]
    return counts, obs, effects, prog_of_gene


def cycle_genes(n_genes: int, n_cycle_genes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the simulator's S and G2M genes: the first 2·n_cycle_genes of the unaffected half."""
    start = n_genes // 2
    k = max(1, min(n_cycle_genes, (n_genes - start) // 2))
    return np.arange(start, start + k), np.arange(start + k, start + 2 * k)


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
            "module_sizes": {str(k): int(v) for k, v in result.modules.value_counts().sort_index().items()},
            "nonzero_fraction": float(np.mean(result.coef.to_numpy() != 0)),
            "median_deviance_explained": float(np.median(result.scores["deviance_explained"])),
            "alpha_median": float(np.median(np.atleast_1d(model.alpha_))),
            "model": {k: v for k, v in model.get_params().items() if k != "penalty_factor"},
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


def simulate_perturbseq_h5ad(path, *, n_cells=600, n_genes=200, n_perturbations=6, n_programmes=3, effect=1.0, theta=5.0,
                             n_batches=2, seed=0, cell_cycle: float = 0.8, n_cycle_genes: int = 10, gmt=None) -> None:
    """A perturb-seq AnnData file with planted effects (the workflow demo): raw counts in .X; .obs holds
    ``perturbation``, ``batch``, ``pct_counts_mt``, ``total_counts`` and the true cell-cycle activities; the
    S/G2M gene lists in ``.uns['s_genes']``/``.uns['g2m_genes']``; the truth in ``.varm['true_effects']`` (genes ×
    perturbations) and ``.var['true_programme']``. ``gmt``: also write a GMT file whose sets are the planted
    programmes (``PLANTED_<q>``), the cell-cycle lists and decoys of genes nothing moves — the offline enrichment demo."""
    import anndata

    from s3r.io import atomic_path, atomic_write

    counts, obs, effects, prog = simulate_perturbseq(n_cells, n_genes, n_perturbations, n_programmes, effect=effect, theta=theta,
                                                     n_batches=n_batches, seed=seed, cell_cycle=cell_cycle, n_cycle_genes=n_cycle_genes)
    obs = pd.DataFrame({
        "perturbation": pd.Categorical(obs["perturbation"]),
        "batch": obs["batch"],
        "pct_counts_mt": obs["pct_mito"].to_numpy(),
        "total_counts": counts.sum(1),
        **({"true_S": obs["true_S"].to_numpy(), "true_G2M": obs["true_G2M"].to_numpy()} if cell_cycle > 0 else {}),
    }, index=obs.index)
    genes = [f"gene_{j + 1}" for j in range(n_genes)]
    s_idx, g_idx = cycle_genes(n_genes, n_cycle_genes)
    adata = anndata.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame({"true_programme": prog}, index=genes),
        varm={"true_effects": effects.T},
        uns={"perturbations": [f"P{j + 1}" for j in range(n_perturbations)], "s_genes": [genes[j] for j in s_idx],
             "g2m_genes": [genes[j] for j in g_idx]},
    )
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    if gmt is not None:
        rng = np.random.default_rng([seed, 3])
        lines = [f"PLANTED_{q}\tplanted programme {q}\t" + "\t".join(genes[j] for j in np.flatnonzero(prog == q)) for q in range(1, n_programmes + 1)]
        lines += [f"CELL_CYCLE_S\tsimulated S phase\t" + "\t".join(genes[j] for j in s_idx),
                  f"CELL_CYCLE_G2M\tsimulated G2M phase\t" + "\t".join(genes[j] for j in g_idx)]
        quiet = np.setdiff1d(np.flatnonzero(prog == 0), np.r_[s_idx, g_idx])  # genes nothing moves: negative controls
        for d in range(1, 6):
            pick = np.sort(rng.choice(quiet, size=min(len(quiet), max(3, n_genes // 12)), replace=False))
            lines.append(f"DECOY_{d}\tgenes no perturbation moves\t" + "\t".join(genes[j] for j in pick))
        with atomic_write(gmt, "w") as fh:
            fh.write("\n".join(lines) + "\n")
