"""Starting point: k-means on graph-smoothed per-spot cell-type distributions gives B and X together.

The problem is non-convex in (X, B) jointly, so the start decides which local solution is found. One spot's
scores say little, so the distributions are first averaged over a few graph neighbourhoods (5 rounds reach
about two rings of neighbours), which lets k-means see regions rather than noise; the cluster centres
become B's columns and the memberships X, a consistent pair whose product is each spot's cluster average.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans

from s3r.deconv.simplex import project_columns_floor_simplex, project_floor_simplex


def smooth_over_graph(values: np.ndarray, adjacency: sp.csr_matrix, *, mix: float = 0.5, rounds: int = 5) -> np.ndarray:
    """(1 − mix)·V + mix·(neighbour mean of V), repeated; spots without neighbours keep their own values."""
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inverse = np.divide(1.0, degree, out=np.zeros_like(degree), where=degree > 0)
    neighbour_mean = sp.diags(inverse) @ adjacency
    keep = np.where(degree > 0, 1.0 - mix, 1.0)[:, None]
    smoothed = values
    for _ in range(rounds):
        smoothed = keep * smoothed + mix * (neighbour_mean @ smoothed)
    return smoothed


def initial_factors(
    scores: np.ndarray, adjacency: sp.csr_matrix, n_components: int, eps: float, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(B (K × D), X (D × n)): k-means on smoothed per-spot cell-type distributions.

    Both are put on the floor simplex. k-means runs 4 times from seeded starts (sklearn), keeping the best.
    """
    distributions = scores / scores.sum(axis=1, keepdims=True)
    smoothed = smooth_over_graph(distributions, adjacency)
    if n_components == 1:
        centres, labels = smoothed.mean(axis=0, keepdims=True), np.zeros(len(scores), dtype=np.int64)
    else:
        kmeans = KMeans(n_clusters=n_components, n_init=4, random_state=seed).fit(smoothed)
        centres, labels = kmeans.cluster_centers_, kmeans.labels_
    dictionary = project_columns_floor_simplex(torch.as_tensor(centres.T.copy(), dtype=torch.float64), eps)
    memberships = np.zeros((n_components, len(scores)))
    memberships[labels, np.arange(len(scores))] = 1.0
    mixture = project_floor_simplex(torch.as_tensor(memberships), eps, dim=0)
    return dictionary.numpy(), mixture.numpy()
