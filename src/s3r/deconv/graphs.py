"""Spot graphs of the proportions mode: the seed's combined-distance MST (the window on which λ is chosen for large
sections is :mod:`s3r.graph.window`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import minimum_spanning_tree

from s3r.graph import SpatialGraph, delaunay_graph, validate_coords


def combined_mst(coords, fractions: np.ndarray, alpha: float = 1.0, max_edge_length: float | None = None) -> SpatialGraph:
    """The seed's MST on d_e = ½‖P_a − P_b‖₁ + α·ℓ_e/median(ℓ) over Delaunay edges: a tree that avoids
    crossing between spots of different composition, so TV along it does not blur boundaries."""
    xy = validate_coords(coords)
    base = delaunay_graph(xy, max_edge_length=max_edge_length)
    a, b = base.edges[:, 0], base.edges[:, 1]
    lengths = np.linalg.norm(xy[a] - xy[b], axis=1)
    dissimilarity = 0.5 * np.abs(fractions[a] - fractions[b]).sum(axis=1)
    distance = dissimilarity + alpha * lengths / max(float(np.median(lengths)), 1e-300) + 1e-12
    n = xy.shape[0]
    tree = minimum_spanning_tree(sp.csr_matrix((distance, (a, b)), shape=(n, n))).tocoo()
    return SpatialGraph(n, np.column_stack([tree.row, tree.col]), method="mst_combined")
