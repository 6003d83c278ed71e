"""The spot graph: canonical, frozen edge lists with optional weights."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from s3r.errors import S3RInputError


def _canonical_edges(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Unordered pairs -> unique (min, max) rows in lexicographic order; self pairs dropped."""
    i = np.asarray(i, dtype=np.int64).ravel()
    j = np.asarray(j, dtype=np.int64).ravel()
    low, high = np.minimum(i, j), np.maximum(i, j)
    keep = low != high
    pairs = np.column_stack((low[keep], high[keep]))
    if pairs.shape[0] == 0:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0).astype(np.int64, copy=False)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class SpatialGraph:
    """An undirected spot graph; every smoothness operator in s3r is derived from its edge list.

    Arrays are read-only so a graph can be shared between fits (and threads) without defensive copies.
    Equality is identity: comparing arrays element-wise is the caller's decision.
    """

    n_nodes: int
    edges: np.ndarray
    weights: np.ndarray | None = None
    method: str = "custom"
    lattice: str | None = None  # e.g. "hexagonal, 6 neighbours" when kNN joined a lattice's whole shells

    def __post_init__(self):
        n = self.n_nodes
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
            raise S3RInputError(f"n_nodes must be a non-negative integer, got {n!r}")
        given = np.asarray(self.edges)
        if given.size and not np.issubdtype(given.dtype, np.integer):
            if not np.issubdtype(given.dtype, np.number) or np.any(given != np.round(given)):
                raise S3RInputError("edges must be integer node indices")
        edges = np.array(given, dtype=np.int64, copy=True)
        if edges.size == 0:
            edges = edges.reshape(0, 2)
        if edges.ndim != 2 or edges.shape[1] != 2:
            raise S3RInputError(f"edges must be an (m, 2) array of node pairs, got shape {edges.shape}")
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise S3RInputError(f"edges refer to nodes outside 0..{n - 1}; check the edge list against n_nodes")
        if np.any(edges[:, 0] == edges[:, 1]):
            row = int(np.flatnonzero(edges[:, 0] == edges[:, 1])[0])
            raise S3RInputError(f"edge row {row} is a self loop ({edges[row, 0]}, {edges[row, 1]}); remove it")
        if self.weights is None:
            weights = np.ones(edges.shape[0], dtype=np.float64)
        else:
            weights = _checked_weights(self.weights, edges.shape[0])
        # Canonical order keeps operators identical however the edge list was produced.
        edges = np.sort(edges, axis=1)
        order = np.lexsort((edges[:, 1], edges[:, 0]))
        edges, weights = edges[order], weights[order]
        repeated = np.flatnonzero(np.all(edges[1:] == edges[:-1], axis=1))
        if repeated.size:
            a, b = edges[repeated[0]]
            raise S3RInputError(f"edge ({a}, {b}) is listed more than once; give each edge once")
        object.__setattr__(self, "n_nodes", int(n))
        object.__setattr__(self, "edges", _frozen(edges))
        object.__setattr__(self, "weights", _frozen(weights))
        object.__setattr__(self, "method", str(self.method))

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    def incidence(self, weighted: bool = False) -> sp.csr_matrix:
        """Edge-incidence A (m × n): ‖A W‖₁ is graph total variation, AᵀA the Laplacian."""
        m = self.n_edges
        data = np.tile(np.array([1.0, -1.0]), m)
        if weighted:
            data *= np.repeat(self.weights, 2)
        indptr = np.arange(0, 2 * m + 1, 2, dtype=np.int64)
        return sp.csr_matrix((data, self.edges.ravel().copy(), indptr), shape=(m, self.n_nodes))

    def adjacency(self) -> sp.csr_matrix:
        """Symmetric weighted adjacency; zero-weight edges are not stored."""
        i, j = self.edges[:, 0], self.edges[:, 1]
        rows = np.concatenate((i, j))
        cols = np.concatenate((j, i))
        data = np.concatenate((self.weights, self.weights))
        adjacency = sp.csr_matrix((data, (rows, cols)), shape=(self.n_nodes, self.n_nodes))
        adjacency.eliminate_zeros()
        adjacency.sort_indices()
        return adjacency

    def laplacian(self) -> sp.csr_matrix:
        """L = Aᵀ diag(w) A = D_w − Adj, built without forming the product."""
        adjacency = self.adjacency()
        weighted_degree = np.asarray(adjacency.sum(axis=1)).ravel()
        laplacian = (sp.diags(weighted_degree, format="csr") - adjacency).tocsr()
        laplacian.eliminate_zeros()
        laplacian.sort_indices()
        return laplacian

    def degrees(self) -> np.ndarray:
        """Number of incident edges per node (weights ignored), int64."""
        return np.bincount(self.edges.ravel(), minlength=self.n_nodes).astype(np.int64)

    def components(self) -> tuple[int, np.ndarray]:
        """Connected components of the edge set; a fit is only smooth within a component, so report them."""
        structure = sp.csr_matrix(
            (np.ones(self.n_edges), (self.edges[:, 0], self.edges[:, 1])), shape=(self.n_nodes, self.n_nodes)
        )
        count, labels = connected_components(structure, directed=False)
        return int(count), labels.astype(np.int64)

    def with_weights(self, weights) -> "SpatialGraph":
        """Same edges, new weights (one per edge, in the canonical edge order)."""
        return SpatialGraph(self.n_nodes, self.edges, _checked_weights(weights, self.n_edges), self.method, self.lattice)

    def subgraph(self, nodes) -> "SpatialGraph":
        """The graph restricted to ``nodes`` (sorted indices), renumbered 0..len(nodes)−1, weights kept."""
        from s3r.graph.window import edge_restriction

        kept, edges = edge_restriction(self.edges, nodes, self.n_nodes)
        return SpatialGraph(len(nodes), edges, self.weights[kept], self.method, self.lattice)

    def __repr__(self) -> str:
        lattice = "" if self.lattice is None else f", lattice={self.lattice!r}"
        return f"SpatialGraph(method={self.method!r}{lattice}, n_nodes={self.n_nodes}, n_edges={self.n_edges})"


def _checked_weights(weights, n_edges: int) -> np.ndarray:
    try:
        values = np.array(weights, dtype=np.float64, copy=True)
    except (TypeError, ValueError):
        raise S3RInputError("edge weights must be numeric, one per edge") from None
    if values.ndim != 1 or values.shape[0] != n_edges:
        raise S3RInputError(
            f"expected {n_edges} edge weights (one per edge) but got shape {values.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        raise S3RInputError(
            f"edge weight at position {int(bad[0])} is {values[bad[0]]!r}; weights must be finite and >= 0"
        )
    return values
