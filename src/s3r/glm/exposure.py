"""Poisson data fits from sufficient statistics: the n × responses passes of a Newton step, done once per path.

For the Poisson family with one offset shared by all responses, the data fit of response b is

    Σ_i w_i (μ_ib − y_ib η_ib) = f(β_b) − s_bᵀβ_b − c_b,   f(β) = Σ_i w_i e^{o_i} e^{x_iᵀβ},

where s_b = Σ_i w_i y_ib x_i and c_b = Σ_i w_i y_ib o_i depend on the counts only (one sparse product per path)
and f is the *same* function for every response. Its value, gradient and Hessian only need sums over cells
that share a design row. Cells are grouped twice: by their binary columns (a class: perturbation × replicate,
with the intercept) and by their other columns (a key: e.g. log library size, which takes few values because
counts are integers). With θ = class part of x_iᵀβ and κ = key part, e^{x_iᵀβ} = e^θ e^κ, so f and its
derivatives are products of a (classes × keys) matrix of cell weights with e^κ over keys — classes × keys ×
responses work instead of cells × features × responses, and exact (no approximation).
"""

from __future__ import annotations

import numpy as np
import torch

EXP_MAX = 300.0  # exp(300) ≈ 1e130: trial steps that far out are rejected by the line search, not overflowed to inf
MAX_KEY_COLUMNS = 6  # the cost grows with the square of the non-binary columns; beyond this the direct path is cheaper


def _unique_rows(A: np.ndarray, binary: bool = False):
    """Distinct rows and each row's index; 0/1 rows of ≤ 62 columns are packed into one integer first (fast)."""
    if A.shape[1] == 1 or (binary and A.shape[1] <= 62):
        code = A[:, 0] if A.shape[1] == 1 else A.astype(np.int64) @ (np.int64(1) << np.arange(A.shape[1], dtype=np.int64))
        _, first, inv = np.unique(code, return_index=True, return_inverse=True)
        return A[first], inv.ravel()
    rows, inv = np.unique(A, axis=0, return_inverse=True)
    return rows, inv.ravel()


class PoissonSums:
    """f, ∇f and ∇²f for many coefficient vectors at once, in the solver's coordinates.

    ``X`` raw features (n, p); ``mean``, ``sd``: the solver's columns are [1, (X − mean)/sd] (centring and
    scaling are per column, so class and key rows are centred and scaled the same way); ``w`` weights summing
    to 1; ``offset`` (n,) or None; ``Y`` counts (n, B), dense or scipy sparse (never densified).
    """

    def __init__(self, X: np.ndarray, mean: np.ndarray, sd: np.ndarray, w: np.ndarray, offset, Y, dtype, device):
        n, p = X.shape
        binary = np.all((X == 0) | (X == 1), axis=0)
        bin_cols, key_cols = np.flatnonzero(binary), np.flatnonzero(~binary)
        classes, cls = _unique_rows(X[:, bin_cols], binary=True)
        keys, key = _unique_rows(X[:, key_cols]) if key_cols.size else (np.zeros((1, 0)), np.zeros(n, dtype=np.int64))
        a = w * (np.exp(offset) if offset is not None else 1.0)
        Wck = np.zeros((classes.shape[0], keys.shape[0]))
        np.add.at(Wck, (cls, key), a)
        # solver order: intercept and binary columns first (the class block), then the others (the key block)
        self.order = np.r_[0, 1 + bin_cols, 1 + key_cols]
        self.inverse = np.argsort(self.order)
        self.identity = bool(np.array_equal(self.order, np.arange(p + 1)))
        Xc = np.c_[np.ones(classes.shape[0]), (classes - mean[bin_cols]) / sd[bin_cols]]
        Zk = (keys - mean[key_cols]) / sd[key_cols]
        t = lambda v: torch.as_tensor(np.ascontiguousarray(v), dtype=dtype, device=device)  # noqa: E731
        self.Xc, self.Zk, self.W = t(Xc), t(Zk), t(Wck)
        self.qb, self.m = Xc.shape[1], Zk.shape[1]
        self.pairs = [(k, l) for k in range(self.m) for l in range(k, self.m)]
        self.Zk2 = t(np.stack([Zk[:, k] * Zk[:, l] for k, l in self.pairs], 1)) if self.m else None
        self.XcXc = t((Xc[:, :, None] * Xc[:, None, :]).reshape(Xc.shape[0], -1))
        # response statistics: s = X̃ᵀ(w ⊙ Y) (solver order), c = Σ w y o, and Σ w (y log y − y) for the exact fit
        Xs = np.c_[np.ones(n), (X - mean) / sd]
        self.S = t(np.asarray(Y.T @ (Xs * w[:, None]))[:, self.order])
        yw = Y.multiply(w[:, None]) if hasattr(Y, "multiply") else Y * w[:, None]
        self.c = t(np.zeros(Y.shape[1]) if offset is None else np.asarray(yw.T @ offset).ravel())
        if hasattr(Y, "toarray"):
            Yc = Y.tocsc()
            v = Yc.data * np.log(Yc.data) - Yc.data
            cols = np.repeat(np.arange(Y.shape[1]), np.diff(Yc.indptr))
            self.shift = t(np.bincount(cols, weights=v * w[Yc.indices], minlength=Y.shape[1]))
        else:
            L = np.zeros_like(Y)
            np.log(Y, out=L, where=Y > 0)
            L *= Y
            L -= Y
            self.shift = t(w @ L)
        self.n_classes, self.n_keys = classes.shape[0], keys.shape[0]

    @staticmethod
    def applies(X: np.ndarray, offset) -> bool:
        """One offset for all responses and few non-binary columns (else the direct path)."""
        if offset is not None and np.asarray(offset).reshape(X.shape[0], -1).shape[1] != 1:
            return False
        binary = np.all((X == 0) | (X == 1), axis=0)
        return int((~binary).sum()) <= MAX_KEY_COLUMNS

    def _parts(self, V):
        """e^κ over keys (scaled by each response's largest) and e^θ over classes (scaled back), V in solver order."""
        theta = self.Xc @ V[:, : self.qb].T  # (C, B)
        kappa = self.Zk @ V[:, self.qb :].T if self.m else torch.zeros((1, V.shape[0]), dtype=V.dtype, device=V.device)
        top = kappa.max(0).values
        E = torch.exp(kappa - top)  # (K, B), ≤ 1
        Et = torch.exp(torch.clamp(theta + top, max=EXP_MAX))  # (C, B)
        return E, Et

    def _ordered(self, U):
        return U if self.identity else U[:, self.order]

    def value(self, U, idx=None):
        """Σ w (μ − y η) for every response (the Poisson nll without its y-only constant)."""
        V = self._ordered(U)
        E, Et = self._parts(V)
        f = (Et * (self.W @ E)).sum(0)
        S, c = (self.S, self.c) if idx is None else (self.S[idx], self.c[idx])
        return f - (V * S).sum(-1) - c

    def exact(self, U, idx=None):
        """Σ w ℓ with ℓ half the unit deviance (the reported objective)."""
        return self.value(U, idx) + (self.shift if idx is None else self.shift[idx])

    def intercept_only(self, q: int):
        """Solver coefficients of the intercept-only fit, in closed form: e^b Σ w e^o = Σ w y."""
        U = torch.zeros((self.S.shape[0], q), dtype=self.S.dtype, device=self.S.device)
        U[:, 0] = torch.log(torch.clamp(self.S[:, 0], min=1e-300)) - torch.log(self.W.sum())
        return U

    def gradient_hessian(self, U, idx=None):
        """(B, q) gradient and (B, q, q) Hessian of the data fit at U."""
        V = self._ordered(U)
        E, Et = self._parts(V)
        B, q = U.shape
        qb = self.qb
        M0 = Et * (self.W @ E)  # (C, B): per class, Σ w e^o e^η
        g = torch.empty((B, q), dtype=U.dtype, device=U.device)
        H = torch.empty((B, q, q), dtype=U.dtype, device=U.device)
        g[:, :qb] = M0.T @ self.Xc
        H[:, :qb, :qb] = (M0.T @ self.XcXc).reshape(B, qb, qb)
        for k in range(self.m):
            M1 = Et * (self.W @ (E * self.Zk[:, k : k + 1]))
            g[:, qb + k] = M1.sum(0)
            cross = M1.T @ self.Xc  # (B, qb)
            H[:, :qb, qb + k] = cross
            H[:, qb + k, :qb] = cross
        for j, (k, l) in enumerate(self.pairs):
            M2 = (Et * (self.W @ (E * self.Zk2[:, j : j + 1]))).sum(0)
            H[:, qb + k, qb + l] = M2
            H[:, qb + l, qb + k] = M2
        g -= self.S if idx is None else self.S[idx]
        if not self.identity:
            g, H = g[:, self.inverse], H[:, self.inverse][:, :, self.inverse]
        return g, H
