"""Windows of a section: a few compact pieces of tissue on which a choice made by cross-validation is made once and
then applied to the whole section (the deconvolution's λ path, the S3R tuning of large sections).

A window is made of whole neighbourhoods, so its graph is the full graph's restriction and every spot inside keeps
the neighbours it has in the section, except along the window's rim. Penalties defined per spot (s3r's standard
parameterisation) then mean the same on the window as on the section.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# tile centres come from k-means on at most this many spots: at 10⁶ spots the full k-means costs seconds for nothing
_CENTRE_SAMPLE = 20_000


def window_spots(coords, size: int, *, tiles: int = 1, edges: np.ndarray | None = None, n: int | None = None,
                 seed: int = 0) -> np.ndarray:
    """Sorted indices of the ``size`` spots closest to one of ``tiles`` centres.

    One tile: the spots nearest the centroid (one compact piece). Several: centres from k-means on the coordinates,
    so the tiles spread over the tissue in proportion to where its spots are, and the spots ranked by their distance
    to the nearest centre — equal-radius discs that together hold exactly ``size`` spots. Without coordinates
    (a given graph) a breadth-first ball from spot 0 of the ``n``-node graph ``edges``.
    """
    size = int(size)
    if coords is None:
        adjacency = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
        seen = sp.csgraph.breadth_first_order(adjacency + adjacency.T, 0, return_predecessors=False)
        return np.sort(seen[:size])
    from scipy.spatial import cKDTree

    xy = np.asarray(coords, dtype=np.float64)
    if size >= xy.shape[0]:
        return np.arange(xy.shape[0])
    if int(tiles) <= 1:
        _, nearest = cKDTree(xy).query(xy.mean(axis=0), k=size)
        return np.sort(np.asarray(nearest, dtype=np.int64))
    centres = tile_centres(xy, int(tiles), seed)
    distance, _ = cKDTree(centres).query(xy)
    return np.sort(np.argsort(distance, kind="stable")[:size].astype(np.int64))


def tile_centres(xy: np.ndarray, tiles: int, seed: int = 0) -> np.ndarray:
    """(tiles, 2) k-means centres of the spots (of a fixed random sample of them on large sections)."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    sample = xy if xy.shape[0] <= _CENTRE_SAMPLE else xy[np.sort(rng.choice(xy.shape[0], _CENTRE_SAMPLE, replace=False))]
    return KMeans(n_clusters=tiles, n_init=4, random_state=seed).fit(sample).cluster_centers_


def subgraph_edges(edges: np.ndarray, nodes: np.ndarray, n: int) -> np.ndarray:
    """Edges with both ends in ``nodes`` (sorted), relabelled 0..len(nodes)−1."""
    return edge_restriction(edges, nodes, n)[1]


def edge_restriction(edges: np.ndarray, nodes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(which edges have both ends in ``nodes``, those edges relabelled 0..len(nodes)−1), in the given edge order."""
    label = np.full(n, -1, dtype=np.int64)
    label[np.asarray(nodes, dtype=np.int64)] = np.arange(len(nodes))
    kept = (label[edges[:, 0]] >= 0) & (label[edges[:, 1]] >= 0)
    return kept, label[edges[kept]]
