"""The data side of :class:`~s3r.glm.estimator.GLMNet`: sparse responses checked without a copy, the gaussian
Gram statistics (from sparse Y in O(nnz · q)), the one-hot structure of perturb-seq designs, response blocks."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from s3r.errors import S3RInputError
from s3r.glm import solver as S
from s3r.glm.families import get_family
from s3r.validation import finite_matrix

def sparse_responses(Y, name: str = "Y"):
    """Sparse Y stays sparse and, when already CSR or CSC float64, is not copied (at 10⁸ non-zeros every copy
    is a gigabyte); only its stored values are checked."""
    if not (sp.isspmatrix_csr(Y) or sp.isspmatrix_csc(Y)) or Y.dtype != np.float64:
        Y = sp.csr_matrix(Y, dtype=np.float64)
    bad = ~np.isfinite(Y.data)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        major = int(np.searchsorted(Y.indptr, k, side="right") - 1)
        row, col = (major, int(Y.indices[k])) if sp.isspmatrix_csr(Y) else (int(Y.indices[k]), major)
        raise S3RInputError(f"{name} has a non-finite value at row {row}, column {col}; impute or drop that row")
    return Y


def gram_stats(Xa: np.ndarray, Y, w: np.ndarray, off=None):
    """(H, c, yy) = (X̃ᵀWX̃, (Y − o)ᵀWX̃, Σ w (y − o)²) for weights w summing to 1: all a gaussian fit and its
    deviances need, from sparse Y in O(nnz · q) without an n × responses dense matrix."""
    Xw = Xa * w[:, None]
    H = Xw.T @ Xa
    if sp.issparse(Y):
        if off is not None:
            raise S3RInputError("a gaussian offset with sparse responses would densify them; pass dense Y or no offset")
        c = np.asarray(Y.T @ Xw)
        if sp.isspmatrix_csr(Y):  # Σ_i w_i y_ib² from the stored values: one nnz-sized temporary
            tmp = np.repeat(w, np.diff(Y.indptr))
            tmp *= Y.data
            tmp *= Y.data
            yy = np.bincount(Y.indices, weights=tmp, minlength=Y.shape[1])
        else:
            yy = np.asarray(Y.multiply(Y).T @ w).ravel()
    else:
        R = Y if off is None else Y - off
        c = (Xw.T @ R).T
        yy = w @ (R * R)
    return H, c, yy


def gaussian_dev(U: np.ndarray, H: np.ndarray, c: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Weighted mean squared residual of coefficients U (..., B, q) from Gram statistics."""
    return np.maximum(yy - 2 * (U * c).sum(-1) + np.einsum("...i,ij,...j->...", U, H, U), 0.0)


def onehot_structure(X: np.ndarray, mean: np.ndarray, sd: np.ndarray, dev, dt):
    """The solver's :class:`~s3r.glm.solver.OneHotStructure` when ≥ 2 columns of X (taken greedily in order)
    are 0/1 indicators of disjoint groups — the perturbations of a perturb-seq design; else None."""
    n, p = X.shape
    binary = [j for j in range(p) if np.all((X[:, j] == 0) | (X[:, j] == 1))]
    taken, used = [], np.zeros(n, dtype=bool)
    for j in binary:
        on = X[:, j] == 1
        if not (on & used).any():
            taken.append(j)
            used |= on
    if len(taken) < 2:
        return None
    groups = np.full(n, -1, dtype=np.int64)
    for g, j in enumerate(taken):
        groups[X[:, j] == 1] = g
    rest = [j for j in range(p) if j not in set(taken)]
    T = raw_map(mean, sd)
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)  # noqa: E731
    Z = np.c_[np.ones(n), X[:, rest]]
    return S.OneHotStructure(torch.as_tensor(groups, device=dev), torch.as_tensor(np.array(taken) + 1, device=dev),
                             torch.as_tensor(np.r_[0, np.array(rest, dtype=np.int64) + 1], device=dev), t(Z), t(T))


def raw_map(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """T with [b, β] = T U: the solver's centred, scaled coefficients U to the raw intercept and slopes."""
    q = mean.size + 1
    T = np.zeros((q, q))
    T[0, 0] = 1.0
    T[0, 1:] = -mean / sd
    T[np.arange(1, q), np.arange(1, q)] = 1 / sd
    return T


def response_blocks(n: int, B: int, batch_size: int | None):
    """Column blocks sized so a dense n × block float64 slice stays near 256 MB."""
    size = int(batch_size) if batch_size else max(16, 32_000_000 // max(n, 1))
    return [np.arange(s, min(B, s + size)) for s in range(0, B, size)]


def check_fit_inputs(model, X, Y, offset, sample_weight):
    """Checked (X, Y, offset, weights, penalty factors, family, one response given as a vector) for ``model.fit``;
    sparse Y stays sparse."""
    if not 0 <= model.l1_ratio <= 1:
        raise S3RInputError(f"l1_ratio must lie in [0, 1]; got {model.l1_ratio}")
    if model.selection not in ("min", "1se"):
        raise S3RInputError("selection must be 'min' or '1se'")
    X = finite_matrix(X, "X", allow_vector=True)
    n, p = X.shape
    if sp.issparse(Y):
        Y = sparse_responses(Y)
        one = False
    else:
        Y = np.asarray(Y, dtype=np.float64)
        one = Y.ndim == 1
        Y = finite_matrix(Y, "Y", allow_vector=True)
    if Y.shape[0] != n:
        raise S3RInputError(f"Y has {Y.shape[0]} rows but X has {n}; they must describe the same cells/spots")
    off = None if offset is None else finite_matrix(np.asarray(offset, dtype=np.float64).reshape(n, -1), "offset", allow_vector=True)
    if off is not None and off.shape[1] not in (1, Y.shape[1]):
        raise S3RInputError(f"offset must be (n,) or (n, {Y.shape[1]}); got {off.shape}")
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape[0] != n or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
        raise S3RInputError("sample_weight needs n finite values ≥ 0 with a positive sum")
    pf = np.ones(p) if model.penalty_factor is None else np.asarray(model.penalty_factor, dtype=np.float64).reshape(-1)
    if pf.shape[0] != p or np.any(pf < 0) or not np.all(np.isfinite(pf)):
        raise S3RInputError(f"penalty_factor needs {p} finite values ≥ 0 (one per feature); got {pf.shape[0]}")
    fam = get_family(model.family, model.theta)
    fam.check_response(torch.as_tensor(Y.data if sp.issparse(Y) else Y), "Y")
    if sp.issparse(Y) and fam.name == "gamma":
        raise S3RInputError("the gamma family needs strictly positive responses; sparse Y has zeros (pass a dense, positive Y)")
    return X, Y, off, w, pf, fam, one


def tikhonov_gram(Tau, pf: np.ndarray, dt, dev) -> torch.Tensor:
    """K = TauᵀTau padded with a zero intercept row and column (q × q), the solver's Tikhonov ridge. Tau must be
    (m, p) and finite, and leave unpenalised features (penalty factor 0) out of the ridge."""
    T = np.asarray(Tau, dtype=np.float64)
    p = pf.shape[0]
    if T.ndim != 2 or T.shape[1] != p or not np.all(np.isfinite(T)):
        raise S3RInputError(f"Tau must be a finite (m, {p}) matrix (one column per feature); got shape {T.shape}")
    bad = np.flatnonzero((pf == 0) & np.any(T != 0, axis=0))
    if bad.size:
        raise S3RInputError(f"Tau has non-zero entries in column {int(bad[0])}, an unpenalised feature (penalty factor 0); zero that column")
    K = np.zeros((p + 1, p + 1))
    K[1:, 1:] = T.T @ T
    return torch.as_tensor(K, dtype=dt, device=dev)

