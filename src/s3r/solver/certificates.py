"""Certificates that an excluded feature is optimal at zero: the check behind the working sets.

The penalty is separable over feature columns — α f_j‖W_j‖₁ + β√n f_j‖W_j‖₂ + λ S(K W_j) — and the data fit sees
W only through the prediction, so the full problem's optimality condition for a column j held at W_j = 0 is

    0 ∈ g_j + α f_j ∂‖·‖₁(0) + β√n f_j ∂‖·‖₂(0) + λ Kᵀ ∂‖·‖₁(0)      (tv, graph_l1)
    g_j = X_j ⊙ v,   v_i = 2c_i(ŷ_i − y_i)   the data-fit gradient at the current W (covariates at their optimum)

(rows fixed at zero are free in the condition; the quadratic smoothness has zero gradient at 0 and drops out).
Written with an edge certificate z ∈ [−1, 1]^m: W_j = 0 is optimal iff some z has

    ‖ S_{α f_j}(g_j + λ Kᵀ z) ‖₂ ≤ β √n f_j        (S the soft-threshold; the norm over the free rows)

— soft-thresholding takes the best ℓ1 subgradient, the ℓ2 ball absorbs the rest. ``check_excluded`` tries z = 0
(closed form: exact for λ = 0 and for the quadratic smoothness), then minimises ½‖S(g_j + λKᵀz)‖² over the box by
FISTA for a bounded number of iterations. Any feasible z that meets the inequality proves W_j = 0 optimal, so
**an excluded feature is never one that should be non-zero** (up to the inner solve's tolerance, through g_j);
a feature whose certificate is not found in the budget is treated as a violator and added to the working set,
where the solver decides — the test may include a feature unnecessarily, never exclude one wrongly. The search is
separable over columns, so a column leaves it as soon as it is certified or proven non-zero.
"""

from __future__ import annotations

import numpy as np
import torch

from s3r.solver.datafit import covariate_solve

CERT_ITER = 300  # FISTA iterations spent looking for one chunk of edge certificates
CERT_CHECK = 10  # check the certificate inequality every this many FISTA iterations
CHUNK_ELEMS = 1 << 22  # edge-sized elements per certificate chunk (m × B × columns): bounds the check's memory


def column_block(rows: int, B: int) -> int:
    """Feature columns per block of an edges × B × p tensor worked on piecewise (``CHUNK_ELEMS`` entries a block)."""
    return max(1, CHUNK_ELEMS // max(1, rows * B))


def covariate_optimum(datafit, pred: torch.Tensor) -> torch.Tensor | None:
    """(B, q) γ minimising Σ c_i (y_i − pred_i − z_iγ)²: the covariates eliminated exactly at this W."""
    if datafit.Z is None:
        return None
    return covariate_solve(datafit.Z, datafit.c, datafit.y - pred)


def data_gradient(datafit, W: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """(n, B) v = ∇φ(ŷ) at W with the covariates at their optimum, zero on rows fixed at zero."""
    pred = datafit.predict_w(W)
    gamma = covariate_optimum(datafit, pred)
    if gamma is not None:
        pred = pred + datafit.Z @ gamma.T
    return 2 * datafit.c * (pred - datafit.y) * datafit.spot_rows(free)


def _soft(A: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return A - torch.clamp(A, -a, a) if a.numel() == 1 else A - torch.minimum(torch.maximum(A, -a), a)


def _fista_search(z, Gs, as_, rs, sc, oks, bads, bests, *, K, lam3, inv_L, free3, assess, max_iter, certificates, J) -> int:
    """FISTA over the edge certificates z ∈ [−1, 1] of the columns ``J`` from ``z``: minimises ½‖S(g + λKᵀz)‖²,
    marking in place (``oks``, ``bads``, ``bests``) each column certified or proven a violator as soon as it is, and
    dropping it from the search; the z each column ends with goes back to ``certificates``. Returns the iterations."""
    its = 0
    y, t = z.clone(), 1.0
    act = torch.arange(z.shape[2], device=z.device)  # columns still undecided (the search is separable)
    left = ~(oks.all(0) | bads.any(0))
    if bool(left.any()) and not bool(left.all()):
        act, Gs, as_, rs, sc = act[left], Gs[:, :, left], as_[:, :, left], rs[:, left], sc[:, left]
        z, y = z[:, :, left].contiguous(), y[:, :, left].contiguous()
    for it in range(1, (max_iter if bool(left.any()) else 0) + 1):
        S = _soft(Gs + lam3 * K.adjoint(y), as_) * free3
        z_new = torch.clamp(y - inv_L * lam3 * K.forward(S), -1.0, 1.0)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = z_new + ((t - 1) / t_new) * (z_new - z)
        z, t = z_new, t_new
        its += 1
        if it % CERT_CHECK == 0 or it == max_iter:
            o, b_, e = assess(Gs, Gs + lam3 * K.adjoint(z), as_, rs, sc)
            oks[:, act] |= o
            bads[:, act] |= b_
            bests[:, act] = torch.minimum(bests[:, act], e)
            left = ~(oks[:, act].all(0) | bads[:, act].any(0))
            if certificates is not None:  # the z each decided column ends with, for the next check
                done = act[~left]
                certificates[:, :, J[done]] = z[:, :, ~left].to(certificates.dtype)
            if not bool(left.any()):
                break
            if not bool(left.all()):  # drop the decided columns: the rest of the search costs what is left
                act, Gs, as_, rs, sc = act[left], Gs[:, :, left], as_[:, :, left], rs[:, left], sc[:, left]
                z, y = z[:, :, left].contiguous(), y[:, :, left].contiguous()
    if certificates is not None and bool(left.any()):  # out of budget: keep where the search got to
        certificates[:, :, J[act]] = z.to(certificates.dtype)
    return its


def check_excluded(
    X: torch.Tensor, v: torch.Tensor, free: torch.Tensor, cols: np.ndarray, alpha: torch.Tensor, beta: torch.Tensor,
    factor: torch.Tensor, K, lam: torch.Tensor | None, *, max_iter: int = CERT_ITER, gradients=None, row_weight=None,
    certificates: torch.Tensor | None = None, per_problem: bool = False, proven: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Optimality of W_j = 0 for each column j in ``cols`` given the data gradient v (module docstring).

    Returns (violates, score, fista_iterations). ``violates[k]`` is False only where an edge certificate proved
    W_j = 0 optimal for every problem of the batch. The search for one stops early for a column once a witness
    proves it non-zero: a direction w with ⟨−g_j, w⟩ > α f_j‖w‖₁ + β√n f_j‖w‖₂ + λ‖Kw‖₁ lowers the objective,
    so W_j = 0 is not optimal (w = −S(g_j + λKᵀz), the current residual, is tried). Columns neither certified nor
    proven within ``max_iter`` count as violators (the conservative side). ``score[k]`` ranks violators: the
    smallest residual found relative to the ℓ1 + ℓ2 budget (−inf for certified columns). Rows of W that are
    aggregates: ``gradients(v, J)`` (default X_J ⊙ v), ``row_weight`` the ℓ1 weight per row, ``free`` per row.
    ``certificates``: an (m, B, p) buffer of edge certificates (z, any dtype) kept by the caller across checks: a
    column's search tries its stored z after z = 0 and starts FISTA there, and the z it ends with is stored back.
    Between the checks of one working-set loop the gradients move little, so a stored z mostly still certifies.
    ``per_problem``: ``violates`` is (B, len(cols)), True where the column is not certified for that problem (a
    column's search stops once it is proven non-zero for one problem, so the others may count it as a violator too).
    ``proven`` (len(cols),), filled in place: True where a witness proved the column non-zero (not merely uncertified)."""
    n, B = v.shape
    violates, score = np.zeros(len(cols), dtype=bool), np.full(len(cols), -np.inf)
    each = np.zeros((v.shape[1], len(cols)), dtype=bool)
    if len(cols) == 0:
        return each if per_problem else violates, score, 0
    dtype, tiny = v.dtype, torch.finfo(v.dtype).tiny
    smooth = K is not None and lam is not None and bool((lam > 0).any())
    m = K.shape[0] if smooth else n
    chunk = column_block(m, B)
    free3 = free.unsqueeze(-1)
    sqrt_n = float(n) ** 0.5
    fista_total = 0
    lam3 = lam.view(1, -1, 1) if smooth else None
    if smooth:
        L = lam3**2 * float(K.norm_bound())
        inv_L = torch.where(L > 0, 1.0 / torch.clamp(L, min=tiny), torch.zeros_like(L))

    def assess(G, A, a, r, scale):
        """(excess ≤ 0: certified, witness gain > 0: proven violator, relative excess) per (problem, column)."""
        S = _soft(A, a) * free3
        norm = torch.linalg.vector_norm(S, dim=0)
        gain = (G * S).sum(0) - (a * S.abs()).sum(0) - r * norm
        if smooth:
            gain = gain - lam3.squeeze(0) * K.forward(S).abs().sum(0)
        return norm - r <= 0, gain > 0, (norm - r) / scale

    for start in range(0, len(cols), chunk):
        idx = np.arange(start, min(start + chunk, len(cols)))
        J = torch.as_tensor(cols[idx], device=X.device)
        G = v.unsqueeze(-1) * X[:, J].unsqueeze(1) if gradients is None else gradients(v, J)  # (rows, B, J)
        f = factor[J].view(1, 1, -1)
        a = alpha.view(1, -1, 1) * f  # (1, B, J), or (rows, B, J) with row weights
        r = (beta.view(1, -1, 1) * sqrt_n * f).squeeze(0)  # (B, J)
        scale = torch.clamp(r + a.amax(0) * sqrt_n, min=tiny)
        a = a if row_weight is None else a * row_weight.view(-1, 1, 1)
        ok, bad, best = assess(G, G, a, r, scale)  # z = 0
        undecided = ~(ok.all(0) | bad.any(0))
        if smooth and bool(undecided.any()):
            keep = torch.nonzero(undecided).flatten()
            Gs, as_, rs, sc = G[:, :, keep], a[:, :, keep], r[:, keep], scale[:, keep]
            oks, bads, bests = ok[:, keep], bad[:, keep], best[:, keep]
            Jk = J[keep]
            if certificates is None:
                z = torch.zeros((m, B, keep.numel()), dtype=dtype, device=X.device)
            else:
                z = certificates[:, :, Jk].to(dtype).clamp_(-1.0, 1.0)
                o, b_, e = assess(Gs, Gs + lam3 * K.adjoint(z), as_, rs, sc)
                oks |= o
                bads |= b_
                bests = torch.minimum(bests, e)
            fista_total += _fista_search(z, Gs, as_, rs, sc, oks, bads, bests, K=K, lam3=lam3, inv_L=inv_L, free3=free3,
                                         assess=assess, max_iter=max_iter, certificates=certificates, J=Jk)
            ok[:, keep], bad[:, keep], best[:, keep] = oks, bads, bests
        col_ok = (ok.all(0) & ~bad.any(0)).cpu().numpy()
        violates[idx] = ~col_ok
        if proven is not None:
            proven[idx] = bad.any(0).cpu().numpy()
        each[:, idx] = (~ok | bad).cpu().numpy()
        score[idx] = np.where(col_ok, -np.inf, best.amax(0).double().cpu().numpy())
    return each if per_problem else violates, score, fista_total
