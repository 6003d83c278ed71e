"""Perturb-seq building blocks: the design (perturbations one-hot against the control, covariates), sparse
normalisation and highly-variable genes, and gene programmes from a coefficient matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3r.errors import S3RInputError

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
