"""Linear smoothness operators K (m × n) applied to a stack of coefficient matrices W (n, B, p).

Two implementations share one interface: an edge-incidence operator that gathers and scatters node rows
(cheaper than a sparse mat-mul and exact for ±w entries), and a general sparse CSR operator for the kNN
operators of ``graph_l1``. Neither ever forms a dense n × n matrix.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee


class LinearOperator:
    shape: tuple[int, int]
    ordered = False  # True on an operator whose nodes and rows were put in a locality order (no second reordering)

    def locality_order(self):
        """(node order, row order, this operator on the reordered nodes and rows), or None where not supported."""
        return None

    # K and Kᵀ are held as torch CSR matrices ``_K`` and ``_KT`` (torch's transpose-multiply is slow), made from the
    # scipy ``_scipy`` in the operator's dtype; the products below serve every subclass.
    def forward(self, W: torch.Tensor) -> torch.Tensor:  # (n, B, p) -> (m, B, p)
        out = torch.empty((self.shape[0],) + tuple(W.shape[1:]), dtype=W.dtype, device=W.device)
        return self.forward_into(W, out)

    def adjoint(self, U: torch.Tensor) -> torch.Tensor:  # (m, B, p) -> (n, B, p)
        out = torch.empty((self.shape[1],) + tuple(U.shape[1:]), dtype=U.dtype, device=U.device)
        return self.adjoint_into(U, out)

    def to_scipy(self) -> sp.csr_matrix:
        """K as a scipy CSR matrix (m × n), for set-up computations outside the hot loop."""
        return self._scipy

    def norm_bound(self) -> float:
        """An upper bound on ‖K‖₂²; step sizes need a bound, not an estimate."""
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return self._KT.values().dtype

    def astype(self, dtype: torch.dtype) -> "LinearOperator":
        """The same operator with its values in ``dtype`` (itself when it already is): mixed-precision solves."""
        if dtype == self.dtype:
            return self
        return self._converted(dtype)

    def _converted(self, dtype):
        new = copy.copy(self)
        new._K = _to_torch_csr(self._scipy, self._K.device, dtype)
        new._KT = _to_torch_csr(self._scipy.T.tocsr(), self._K.device, dtype)
        return new

    def edge_bounds(self) -> np.ndarray:
        """(m,) r_e = (Σ_i |K_ei|) · max over the nodes i of row e of (Σ_e' |K_e'i|).

        Dual steps σ_e = c/(τ r_e) keep ‖Σ^{1/2} K τ^{1/2}‖² ≤ c (Pock & Chambolle 2011, Lemma 2 with row weights
        1/max node load): every node's weighted sum Σ_e |K_ei|/max-load ≤ 1. With unit incidence rows r_e = 2·max(deg_a,
        deg_b) ≤ 2·max degree, so edges between low-degree nodes get larger steps than the global bound allows.
        """
        cached = getattr(self, "_edge_bounds", None)
        if cached is None:
            absK = abs(sp.csr_matrix(self.to_scipy()))
            row = np.asarray(absK.sum(axis=1)).ravel()
            load = np.asarray(absK.sum(axis=0)).ravel()
            coo = absK.tocoo()
            peak = np.zeros(absK.shape[0])
            np.maximum.at(peak, coo.row, load[coo.col])
            cached = self._edge_bounds = row * peak
        return cached

    def row_scaled(self, scale: torch.Tensor) -> torch.Tensor:
        """diag(scale) K as a torch CSR matrix in scale's dtype, on K's device: the PDHG folds its per-edge dual step
        into K, so U + σ ⊙ K W is one sparse product (one pass over the edges instead of gather, gather, subtract,
        multiply-add)."""
        # K's own index arrays (no second copy of the pattern: 179 MB at 10⁶ spots, kNN 7), its values scaled row by row
        indptr, indices = self._K.crow_indices(), self._K.col_indices()
        values = self._K.values().to(scale.dtype) * scale.reshape(-1).repeat_interleave(indptr.diff())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(indptr, indices, values, size=self.shape, check_invariants=False)

    # The solver's loop calls these with preallocated buffers: at 10⁵ spots a fresh edge-sized tensor costs
    # several times the arithmetic (page faults of newly mapped memory), so the hot path allocates nothing.
    def forward_into(self, W: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return _spmm_into(self._K, W, out)

    def adjoint_into(self, U: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return _spmm_into(self._KT, U, out)


def _gershgorin_bound(K: sp.spmatrix) -> float:
    # ‖K‖² = λ_max(KᵀK) ≤ max row sum of |K|ᵀ|K| (Gershgorin), computed without forming KᵀK.
    absK = abs(sp.csr_matrix(K))
    if absK.nnz == 0:
        return 0.0
    return float(np.max(absK.T @ (absK @ np.ones(absK.shape[1]))))


class IncidenceOperator(LinearOperator):
    """(K W)_e = w_e (W_i − W_j) for edge e = (i, j).

    Both maps are CSR products, K W (two entries an edge) and Kᵀ U (one pass over the edges per node), deterministic on
    CPU and GPU alike, unlike scattered atomic adds.
    """

    def __init__(self, edges: np.ndarray, weights: np.ndarray, n_nodes: int, device, dtype):
        edges = np.array(edges, dtype=np.int64).reshape(-1, 2)
        weights = np.array(weights, dtype=np.float64)
        self.shape = (edges.shape[0], int(n_nodes))
        self._src = torch.as_tensor(edges[:, 0], device=device)
        self._dst = torch.as_tensor(edges[:, 1], device=device)
        self._w = torch.as_tensor(weights, device=device, dtype=dtype).view(-1, 1, 1)
        deg_w2 = np.zeros(n_nodes)
        np.add.at(deg_w2, edges[:, 0], weights**2)
        np.add.at(deg_w2, edges[:, 1], weights**2)
        self._bound = 2.0 * float(deg_w2.max()) if edges.size else 0.0
        m = edges.shape[0]
        rows = np.concatenate([edges[:, 0], edges[:, 1]])
        cols = np.concatenate([np.arange(m), np.arange(m)])
        vals = np.concatenate([weights, -weights])
        KT = sp.csr_matrix((vals, (rows, cols)), shape=(int(n_nodes), m))
        self._KT = _to_torch_csr(KT, device, dtype)
        self._scipy = KT.T.tocsr()
        self._K = _to_torch_csr(self._scipy, device, dtype)

    def _converted(self, dtype):
        new = super()._converted(dtype)
        new._w = self._w.to(dtype)
        return new

    def norm_bound(self):
        # KᵀK is the weighted Laplacian Σ w_e² (e_i − e_j)(e_i − e_j)ᵀ: Gershgorin gives 2·max weighted degree.
        return self._bound

    def locality_order(self):
        """Nodes in reverse Cuthill–McKee order and edges sorted by their renumbered ends, with the operator on them.

        Spots arrive in barcode or cell-id order, which is random in space, so every gather of a node row in K W and
        every row of the Kᵀ U product reads a random place of W or U: at 10⁵ spots the two sparse products ran
        3× (Kᵀ U) and 1.8× (K W) faster with neighbours stored near each other, a PDHG iteration 1.4× (benchmarks/
        README.md, session 13). The order is a property of the graph alone (no coordinates needed), computed once."""
        cached = getattr(self, "_locality", None)
        if cached is None:
            n = self.shape[1]
            E = torch.stack([self._src, self._dst], 1).cpu().numpy()
            A = sp.coo_matrix((np.ones(len(E)), (E[:, 0], E[:, 1])), shape=(n, n)).tocsr()
            order = np.asarray(reverse_cuthill_mckee((A + A.T).tocsr(), symmetric_mode=True), dtype=np.int64)
            rank = np.empty(n, dtype=np.int64)
            rank[order] = np.arange(n)
            Ep = rank[E]  # the same edges, orientation kept (the dual's sign means the same)
            rows = np.lexsort((Ep.max(1), Ep.min(1)))
            new = IncidenceOperator(Ep[rows], self._w.view(-1).double().cpu().numpy()[rows], n, self._src.device, self.dtype)
            new.ordered = True
            cached = self._locality = (order, rows, new)
        return cached


class SparseMatrixOperator(LinearOperator):
    """A general sparse K held as CSR for K and Kᵀ (torch's transpose-multiply is slow)."""

    def __init__(self, K: sp.spmatrix, device, dtype):
        K = sp.csr_matrix(K, dtype=np.float64)
        K.sum_duplicates()
        self.shape = K.shape
        self._scipy = K
        self._K = _to_torch_csr(K, device, dtype)
        self._KT = _to_torch_csr(K.T.tocsr(), device, dtype)
        self._bound = _gershgorin_bound(K)

    def norm_bound(self):
        return self._bound


def _spmm_into(A: torch.Tensor, T: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out = A @ T over the first axis of T (rows, B, p), written into out without a temporary."""
    flat = out.view(out.shape[0], -1)
    dense = T.reshape(T.shape[0], -1)
    try:
        torch.addmm(flat, A, dense, beta=0, out=flat)
    except (RuntimeError, NotImplementedError):  # a backend without sparse addmm into a given output
        flat.copy_(A @ dense)
    return out


def _to_torch_csr(K: sp.csr_matrix, device, dtype) -> torch.Tensor:
    with warnings.catch_warnings():  # torch flags CSR as beta; mat-mul with a dense right side is all we use
        warnings.simplefilter("ignore", UserWarning)
        return _csr(K, device, dtype)


def _index_dtype(K: sp.csr_matrix) -> torch.dtype:
    """int32 CSR indices where they fit: the products stream the index arrays every iteration, and at 10⁵ spots ×
    6 columns (float32, one thread) the folded dual step's addmm took 5.3 instead of 6.6 ms (benchmarks/README.md,
    session 14); int64 only for matrices too large for 32-bit positions."""
    return torch.int32 if max(K.nnz, *K.shape) < 2**31 - 1 else torch.int64


def _csr(K, device, dtype):
    idx = _index_dtype(K)
    return torch.sparse_csr_tensor(
        torch.as_tensor(K.indptr, dtype=idx),
        torch.as_tensor(K.indices, dtype=idx),
        torch.as_tensor(K.data, dtype=dtype),
        size=K.shape,
        check_invariants=False,
    ).to(device)
