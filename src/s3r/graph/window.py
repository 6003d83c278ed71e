"""Windows of a section: a compact piece of tissue on which a choice made by cross-validation is made once and then
applied to the whole section (the deconvolution's λ path, the S3R tuning of large sections).

A window is made of whole neighbourhoods, so its graph is the full graph's restriction and every spot inside keeps
the neighbours it has in the section, except along the window's rim. Penalties defined per spot (s3r's standard
parameterisation) then mean the same on the window as on the section.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def window_spots(coords, size: int, *, edges: np.ndarray | None = None, n: int | None = None) -> np.ndarray:
    """Sorted indices of the ``size`` spots nearest the centroid (all of them on a smaller section); without
    coordinates (a given graph), a breadth-first ball from spot 0 of the ``n``-node graph ``edges``."""
    size = int(size)
    if coords is None:
        adjacency = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        seen = sp.csgraph.breadth_first_order(adjacency + adjacency.T, 0, return_predecessors=False)
        return np.sort(seen[:size])
    from scipy.spatial import cKDTree

    xy = np.asarray(coords, dtype=np.float64)
    if size >= xy.shape[0]:
        return np.arange(xy.shape[0])
    _, nearest = cKDTree(xy).query(xy.mean(axis=0), k=size)
    return np.sort(np.asarray(nearest, dtype=np.int64))


def edge_restriction(edges: np.ndarray, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(which edges have both ends in ``nodes`` (sorted), those edges relabelled 0..len(nodes)−1), in the given edge
    order — the window's graph."""
    label = np.full(n, -1, dtype=np.int64)
    label[np.asarray(nodes, dtype=np.int64)] = np.arange(len(nodes))
    kept = (label[edges[:, 0]] >= 0) & (label[edges[:, 1]] >= 0)
    return kept, label[edges[kept]]
