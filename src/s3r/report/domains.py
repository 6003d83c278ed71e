"""Spatial domains: spots grouped by the regression they follow (k-means on the rows of W).

A domain is a set of spots whose coefficient vectors are alike, i.e. where the same features drive the
targets with the same strength. S3R's smoothness penalty makes W piecewise constant over the tissue, so
k-means on W's rows recovers the regions the penalty found (the S3R paper scores its maps this way, by the
ARI of k-means clusters of W against the true regions).

Scaling. Features are standardised before fitting, so every coefficient is in "target units per feature
SD" and the columns of one W are already on a common scale; z-scoring each column would instead let a
feature with a tiny, noise-level spatial variation weigh as much as one that switches sign between regions.
Columns are therefore only centred, and constant columns (no spatial information) are dropped. Several
targets of one sample are put side by side by :func:`stack_coefficients`, which divides each target's block
by its root mean square, so a target on a large scale does not decide the domains alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3r.errors import S3RInputError

__all__ = ["stack_coefficients", "spot_domains", "plot_domains", "domain_table"]

# Silhouette costs O(n²); above this many spots it is computed on a fixed (seeded) subsample.
SILHOUETTE_SAMPLE = 4000
N_INIT = 10
# a k chosen by silhouette must give every domain at least this share of the spots (and MIN_DOMAIN_SPOTS): on nearly
# constant maps k-means splits off single outlier spots, and one large cluster plus a few such "domains" scores a
# silhouette near 1 (DLPFC 151675, 9 targets' maps: k = 6, five single-spot domains, 0.998; benchmarks/README.md,
# session 19). A fixed k is taken as asked.
MIN_DOMAIN_SHARE = 0.01
MIN_DOMAIN_SPOTS = 5


def stack_coefficients(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Several targets' W (each n × p_t, same spots) side by side, each scaled to unit root mean square.

    All-zero blocks (a target with nothing selected) are kept as zeros: they carry no domain information.
    """
    if not blocks:
        raise S3RInputError("no coefficient matrix to cluster; pass at least one fit's W")
    arrays = [np.asarray(b, dtype=np.float64) for b in blocks]
    n = arrays[0].shape[0]
    for i, b in enumerate(arrays):
        if b.ndim != 2 or b.shape[0] != n:
            raise S3RInputError(
                f"coefficient block {i} has shape {b.shape}, expected ({n}, p): all targets of a sample must "
                "cover the same spots in the same order"
            )
    scaled = []
    for b in arrays:
        rms = float(np.sqrt(np.mean(b**2))) if b.size else 0.0
        scaled.append(b / rms if rms > 0 else b)
    return np.concatenate(scaled, axis=1)


def _prepare(W) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise S3RInputError(f"W must be a 2-d array (spots × features), got shape {W.shape}")
    if not np.isfinite(W).all():
        i = int(np.argwhere(~np.isfinite(W))[0, 0])
        raise S3RInputError(f"W has NaN/inf coefficients (first at spot {i}); refit or drop the failed fit")
    spread = W.std(axis=0)
    scale = float(np.abs(W).max()) if W.size else 0.0
    keep = spread > 1e-12 * max(scale, 1e-300)
    return W[:, keep] - W[:, keep].mean(axis=0)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Domains numbered by decreasing size, ties by first spot: the numbering never depends on k-means' ids."""
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda i: (-counts[i], first[i]))
    mapping = np.empty(int(ids.max()) + 1, dtype=np.int64)
    for new, i in enumerate(order):
        mapping[ids[i]] = new
    return mapping[labels]


def _kmeans(Z: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=N_INIT, random_state=seed).fit_predict(Z)


def _silhouette(Z: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    sample = SILHOUETTE_SAMPLE if Z.shape[0] > SILHOUETTE_SAMPLE else None
    return float(silhouette_score(Z, labels, sample_size=sample, random_state=seed))


def spot_domains(W, k: int | None = None, k_range: tuple[int, int] = (2, 8), seed: int = 0):
    """Spatial domains from k-means on the rows of ``W`` (spots × features, or a :func:`stack_coefficients`).

    ``k``: the number of domains, or None to choose it in ``k_range`` (inclusive) by the largest mean
    silhouette (ties go to the smaller k). Deterministic: fixed ``random_state`` and ``n_init``.

    Returns ``(labels, k, silhouette_by_k)``: labels 0..k-1 numbered by decreasing domain size, the k used,
    and {k: mean silhouette} for every k tried. A W without spatial variation (nothing selected, or a
    constant map) is one domain, k = 1; so is one whose every k splits off a domain smaller than
    ``MIN_DOMAIN_SHARE`` of the spots (outlier spots, not a region).
    """
    Z = _prepare(W)
    n = Z.shape[0]
    if n == 0:
        raise S3RInputError("W has no spots; nothing to cluster")
    distinct = len(np.unique(Z, axis=0)) if Z.shape[1] else 1
    if k is not None:
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise S3RInputError(f"report.domains.k must be a positive integer, got {k!r}")
        k = int(k)
        if k > distinct:
            raise S3RInputError(
                f"k = {k} domains but W has only {distinct} distinct coefficient vector(s); lower report.domains.k"
            )
        if k == 1 or Z.shape[1] == 0:
            return np.zeros(n, dtype=np.int64), 1, {}
        labels = _relabel(_kmeans(Z, k, seed))
        return labels, k, {k: _silhouette(Z, labels, seed)}
    lo, hi = (int(v) for v in k_range)
    if lo < 2 or hi < lo:
        raise S3RInputError(f"k_range must be (low, high) with 2 <= low <= high, got {k_range!r}")
    hi = min(hi, distinct, n - 1)
    if Z.shape[1] == 0 or hi < lo:
        return np.zeros(n, dtype=np.int64), 1, {}
    scores, fits = {}, {}
    smallest = max(MIN_DOMAIN_SPOTS, int(np.ceil(MIN_DOMAIN_SHARE * n)))
    for kk in range(lo, hi + 1):
        fits[kk] = _relabel(_kmeans(Z, kk, seed))
        scores[kk] = _silhouette(Z, fits[kk], seed)
    sized = [kk for kk in scores if np.bincount(fits[kk]).min() >= smallest]
    if not sized:  # every split leaves a domain of a few spots: outliers, not domains
        return np.zeros(n, dtype=np.int64), 1, scores
    best = max(sized, key=lambda kk: (scores[kk], -kk))
    return fits[best], best, scores


def domain_table(spot_ids: Sequence[str], labels: np.ndarray):
    """spot → domain as a DataFrame (domains named D1..Dk in the table and the figures)."""
    import pandas as pd

    return pd.DataFrame({"spot": list(map(str, spot_ids)), "domain": [f"D{int(d) + 1}" for d in labels]})


def plot_domains(coords, labels, png_path, *, title: str = "", silhouette_by_k: dict | None = None, tissue=None) -> dict[str, Path]:
    """Domain map (one colour per domain, true aspect ratio), with the silhouette curve when k was chosen."""
    import matplotlib.pyplot as plt

    from s3r.report.style import panel_figsize, save_figure, spatial_scatter, use_report_style

    use_report_style()
    coords = np.asarray(coords, dtype=np.float64)
    names = np.array([f"D{int(d) + 1}" for d in labels])
    curve = {int(k): v for k, v in (silhouette_by_k or {}).items() if np.isfinite(v)}
    ncols = 2 if len(curve) > 1 else 1
    width, height = panel_figsize(coords, 1, 1)
    fig, axes = plt.subplots(1, ncols, figsize=(width + (3.4 if ncols == 2 else 0.6), height), squeeze=False,
                             gridspec_kw={"width_ratios": [width, 3.0]} if ncols == 2 else None)
    k = len(np.unique(labels))
    spatial_scatter(axes[0, 0], coords, names, categorical=True, title=f"{k} spatial domain{'s' * (k != 1)}",
                    legend_title="domain", tissue=tissue)
    if ncols == 2:
        ax = axes[0, 1]
        ks = sorted(curve)
        ax.plot(ks, [curve[kk] for kk in ks], marker="o", color="0.3")
        ax.axvline(k, color="tab:red", linestyle="--", linewidth=1)
        ax.set_xticks(ks)
        ax.set_xlabel("k (number of domains)")
        ax.set_ylabel("mean silhouette")
        ax.set_title("choice of k" if k > 1 else f"no k: each splits off a domain under {MIN_DOMAIN_SHARE:.0%} of the spots", fontsize=8 if k == 1 else None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, png_path)
