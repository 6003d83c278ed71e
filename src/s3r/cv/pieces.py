"""The size of a fitted map (its degrees of freedom), by which tuning picks the simplest of equally good models."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from s3r.problem import Problem


def map_pieces(problem: Problem, W, rtol: float = 1e-3) -> np.ndarray:
    """(B,) size of each fitted map: its degrees of freedom, for choosing the simplest of equally good models.

    For ``tv`` the number of non-zero constant pieces summed over features — the degrees of freedom of the
    fused lasso (Tibshirani & Taylor 2011): spots joined by an edge with equal coefficients form one piece.
    Other smoothness modes do not fuse, so there it is the number of non-zero coefficients. Entries within
    ``rtol`` × the map's largest |coefficient| count as equal (tuning stops its solves early).

    Tuning calls this for every trial on every fold, so the piece graph has one node per non-zero entry only
    (zero entries belong to no piece; sparse maps at 10⁵ spots stay cheap): cost follows the map's support.
    """
    W = np.asarray(W, dtype=np.float64)
    n, B, p = W.shape
    out = np.zeros(B, dtype=np.int64)
    edges = np.asarray(problem.graph.edges) if problem.graph is not None and problem.smooth == "tv" else None
    for b in range(B):
        Wb = W[:, b, :]
        tol = rtol * float(np.abs(Wb).max())
        nonzero = np.abs(Wb) > tol
        if tol == 0.0 or edges is None:
            out[b] = int(nonzero.sum())
            continue
        cols = np.flatnonzero(nonzero.any(axis=0))
        Wc, nz = Wb[:, cols], nonzero[:, cols]
        node = np.full(nz.shape, -1, dtype=np.int64)
        node[nz] = np.arange(int(nz.sum()))  # one id per non-zero (spot, feature) entry
        a, c = edges[:, 0], edges[:, 1]
        same = (np.abs(Wc[a] - Wc[c]) <= tol) & nz[a] & nz[c]  # (edges, non-zero features)
        e, j = np.nonzero(same)
        size = int(nz.sum())
        joined = sp.coo_matrix((np.ones(e.size), (node[a[e], j], node[c[e], j])), shape=(size, size))
        out[b] = connected_components(joined, directed=False)[0]
    return out


def map_features(W, rtol: float = 1e-3) -> np.ndarray:
    """(B,) number of features each fitted map uses: columns with any entry above ``rtol`` × the map's largest
    |coefficient| (the same tolerance as :func:`map_pieces`, since tuning stops its solves early) — the group
    lasso's support, a size measure that does not grow with how finely a selected feature's map is cut."""
    W = np.abs(np.asarray(W, dtype=np.float64))
    top = W.max(axis=(0, 2), keepdims=True)
    used = (W > rtol * top).any(axis=0) & (top[0] > 0)  # (B, p); an all-zero map uses none
    return used.sum(axis=1).astype(np.int64)
