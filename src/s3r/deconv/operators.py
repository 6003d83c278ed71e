"""The graph's edge-incidence operator A, applied to component-major stacks (D × spots).

Mixtures are kept component-major so that sums over components and per-spot scalings are contiguous
vector operations (a tiny trailing dimension is slow in torch). A then acts on each component's row, which
is one sparse matrix–vector product with the block-diagonal I_D ⊗ A. Both it and its transpose are stored
because torch's transposed sparse product is slow. Spots arrive in barcode order, which scatters neighbours
across memory; a reverse Cuthill–McKee order keeps each edge's ends close and makes the products several
times faster on a CPU at 10⁵ spots.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee

from s3r.graph import SpatialGraph


def locality_order(graph: SpatialGraph) -> np.ndarray:
    """A node permutation (new position -> old node) that keeps neighbours close in memory."""
    if graph.n_edges == 0:
        return np.arange(graph.n_nodes)
    structure = sp.csr_matrix(
        (np.ones(graph.n_edges), (graph.edges[:, 0], graph.edges[:, 1])), shape=(graph.n_nodes,) * 2
    )
    return np.asarray(reverse_cuthill_mckee(structure, symmetric_mode=False), dtype=np.int64)


def relabel_edges(edges: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges in the new labels (i < j, sorted) and, per new edge, the index of the original edge."""
    new_label = np.empty_like(order)
    new_label[order] = np.arange(order.size)
    relabelled = np.sort(new_label[np.asarray(edges, dtype=np.int64).reshape(-1, 2)], axis=1)
    position = np.lexsort((relabelled[:, 1], relabelled[:, 0]))
    return relabelled[position], position


def _torch_csr(matrix: sp.spmatrix, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """int32 indices where they fit: the CPU kernels (MKL) otherwise convert int64 indices on every product."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    index_dtype = torch.int32 if matrix.nnz < 2**31 - 1 else torch.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            torch.as_tensor(matrix.indptr, dtype=index_dtype),
            torch.as_tensor(matrix.indices, dtype=index_dtype),
            torch.as_tensor(matrix.data, dtype=dtype),
            size=matrix.shape,
        ).to(device)


class Incidence:
    """A (m × n) with row e = +1 at i, −1 at j; apply(X) gives (A Xᵀ)ᵀ for X of shape (D, n)."""

    def __init__(self, n_nodes: int, edges: np.ndarray, n_components: int, device: torch.device, dtype: torch.dtype):
        edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        m = edges.shape[0]
        self.n_nodes, self.n_edges, self.n_components = int(n_nodes), int(m), int(n_components)
        self.edges = edges
        self.matrix = sp.csr_matrix(
            (np.tile([1.0, -1.0], m), edges.ravel(), np.arange(0, 2 * m + 1, 2)), shape=(m, self.n_nodes)
        )
        blocks = sp.identity(self.n_components, format="csr")
        self._forward = _torch_csr(sp.kron(blocks, self.matrix), device, dtype)
        self._adjoint = _torch_csr(sp.kron(blocks, self.matrix.T), device, dtype)
        degrees = np.bincount(edges.ravel(), minlength=self.n_nodes)
        self.degrees = torch.as_tensor(degrees, device=device, dtype=dtype)

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """(D, n) -> (D, m): each component's jump across each edge."""
        D = X.shape[0]
        if self.n_edges == 0:
            return X.new_zeros((D, 0))
        return torch.mv(self._forward, X.reshape(-1)).view(D, self.n_edges)

    def adjoint(self, Y: torch.Tensor) -> torch.Tensor:
        """(D, m) -> (D, n)."""
        D = Y.shape[0]
        if self.n_edges == 0:
            return Y.new_zeros((D, self.n_nodes))
        return torch.mv(self._adjoint, Y.reshape(-1)).view(D, self.n_nodes)

    def node_edge_matrix(self) -> sp.csr_matrix:
        """|A|ᵀ (n × m): row v sums the weights of v's edges, the w-step's equality constraints."""
        return abs(self.matrix).T.tocsr()
