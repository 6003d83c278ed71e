"""Spot graphs of the proportions mode: the seed's combined-distance MST, and the window of spots (with its
restricted graph) on which λ is chosen for large sections."""

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


def window_spots(coords, order: np.ndarray, edges: np.ndarray, n: int, size: int) -> np.ndarray:
    """The ``size`` spots nearest the centroid (in the solver's order): a compact piece of tissue whose graph
    is the full graph's restriction, so λ (unit-free) transfers to the whole section."""
    from scipy.spatial import cKDTree

    if coords is None:  # a given graph without coordinates: a breadth-first ball from spot 0
        adjacency = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        seen = sp.csgraph.breadth_first_order(adjacency + adjacency.T, 0, return_predecessors=False)
        return np.sort(seen[: int(size)])
    xy = np.asarray(coords, dtype=np.float64)[order]
    _, nearest = cKDTree(xy).query(xy.mean(axis=0), k=int(size))
    return np.sort(np.asarray(nearest, dtype=np.int64))


def subgraph_edges(edges: np.ndarray, nodes: np.ndarray, n: int) -> np.ndarray:
    """Edges with both ends in ``nodes`` (sorted), relabelled 0..len(nodes)−1."""
    label = np.full(n, -1, dtype=np.int64)
    label[nodes] = np.arange(len(nodes))
    kept = edges[(label[edges[:, 0]] >= 0) & (label[edges[:, 1]] >= 0)]
    return label[kept]
