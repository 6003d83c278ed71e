"""Starting point: dictionary from k-means on graph-smoothed scores, mixtures from EM under that dictionary.

The problem is non-convex in (X, B) jointly, so the start decides which local solution is found. Smoothing
the per-spot cell-type distributions over the graph first makes k-means see regions rather than noise, and
a few EM sweeps (monotone, no step size) give mixtures consistent with the chosen dictionary.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans

import torch

from s3r.deconv.simplex import project_columns_floor_simplex, project_floor_simplex


def smooth_over_graph(values: np.ndarray, adjacency: sp.csr_matrix, *, mix: float = 0.5, rounds: int = 10) -> np.ndarray:
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

    B's columns are the cluster centres and X the cluster memberships, both on the floor simplex, so X Bᵀ
    starts at each spot's smoothed cluster average.
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


def initial_mixture(scores: torch.Tensor, dictionary: torch.Tensor, eps: float, *, sweeps: int = 20) -> torch.Tensor:
    """EM for X (D × n) with B fixed and no spatial term: X_di ← X_di · M_di / z_i stays on the simplex.

    ``scores`` is component-major (K × n).
    """
    component_scores = dictionary.T @ scores
    n_components = dictionary.shape[1]
    mixture = torch.full((n_components, scores.shape[1]), 1.0 / n_components, dtype=scores.dtype, device=scores.device)
    for _ in range(sweeps):
        evidence = (component_scores * mixture).sum(dim=0)
        mixture = mixture * component_scores / evidence
    return project_floor_simplex(mixture, eps, dim=0)
