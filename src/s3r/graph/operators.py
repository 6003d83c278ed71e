"""Smoothness operators built from a graph or from coordinates (the reference's kNN operator, the neighbour mean)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from s3r.graph.build import _nearest_neighbours
from s3r.graph.coords import _check_k, validate_coords
from s3r.graph.spatial_graph import SpatialGraph


def reference_knn_operator(coords, k: int = 7) -> sp.csr_matrix:
    """The reference S3R "L mode" operator G = Eᵀ, reproduced exactly for --compat.

    E has row i = +1 at the k nearest neighbours of i, −1 at i, and its last row zeroed. The quirks (one-way
    kNN, the zeroed row, the transpose) are deliberate: they make objectives comparable with the reference.
    """
    k = _check_k(k)
    xy = validate_coords(coords, min_spots=k + 1)
    n = xy.shape[0]
    neighbours = _nearest_neighbours(xy, k)
    kept_rows = np.arange(n - 1, dtype=np.int64)  # E's last row is zeroed
    e_rows = np.concatenate((np.repeat(kept_rows, k), kept_rows))
    e_cols = np.concatenate((neighbours[:-1].ravel(), kept_rows))
    values = np.concatenate((np.ones((n - 1) * k), -np.ones(n - 1)))
    # G = Eᵀ: swap the roles of rows and columns.
    operator = sp.csr_matrix((values, (e_cols, e_rows)), shape=(n, n))
    operator.sort_indices()
    return operator


def neighbour_mean_operator(graph: SpatialGraph) -> sp.csr_matrix:
    """Row i = e_i − mean of i's neighbours: the principled graph_l1 operator (no zeroed row, symmetric kNN).

    The mean is weighted by edge weights (plain mean for the default unit weights); isolated spots give a
    zero row because they have nothing to be smooth against.
    """
    adjacency = graph.adjacency()
    weighted_degree = np.asarray(adjacency.sum(axis=1)).ravel()
    has_neighbours = weighted_degree > 0
    inverse = np.zeros_like(weighted_degree)
    inverse[has_neighbours] = 1.0 / weighted_degree[has_neighbours]
    operator = (sp.diags(has_neighbours.astype(np.float64), format="csr") - sp.diags(inverse) @ adjacency).tocsr()
    operator.eliminate_zeros()
    operator.sort_indices()
    return operator
