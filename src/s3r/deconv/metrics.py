"""Accuracy of a deconvolution against ground truth, and spatial coherence of its labels.

Only quantities invariant to relabelling the components are compared with truth: X Bᵀ is unique even when
the factorisation is not, and ARI ignores label names.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score


def proportions_rmse(estimated: np.ndarray, truth: np.ndarray) -> float:
    """RMSE over all spots and cell types of X Bᵀ against the true proportions."""
    return float(np.sqrt(np.mean((np.asarray(estimated) - np.asarray(truth)) ** 2)))


def mean_jensen_shannon(estimated: np.ndarray, truth: np.ndarray) -> float:
    """Mean per-spot Jensen–Shannon divergence (natural log) between proportion vectors."""
    p, q = np.asarray(estimated, float), np.asarray(truth, float)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log(a / b), 0.0)
        return terms.sum(axis=1)

    return float(np.mean(0.5 * kl(p, m) + 0.5 * kl(q, m)))


def argmax_ari(estimated_mixture: np.ndarray, true_labels: np.ndarray) -> float:
    """ARI between each spot's dominant component and the true region (or true dominant component)."""
    return float(adjusted_rand_score(np.asarray(true_labels), np.argmax(estimated_mixture, axis=1)))


def neighbour_agreement(labels: np.ndarray, edges: np.ndarray) -> float:
    """Fraction of graph edges whose two spots share a label (edges index spots, not edges)."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if edges.shape[0] == 0:
        return float("nan")
    labels = np.asarray(labels)
    return float(np.mean(labels[edges[:, 0]] == labels[edges[:, 1]]))
