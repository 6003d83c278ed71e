"""The numba kernels of :mod:`s3r.solver.fused_cpu`: one PDHG step of one problem as three passes (primal over the
nodes, data dual over the nodes, edge dual over the edges), run for every problem of a batch over k steps.

Arrays are problem-major, (B, n, p) / (B, m, p) / (B, n), so one problem's rows are contiguous; X (n, p) and the
edge arrays are shared. ``r`` is the relaxation of the step (ρ, or 0 on the last step: z then stays unrelaxed
beside its step zt for the caller's residual check). No branch sits inside an inner loop, so they vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# LLVM's fast-math flags that let the loops vectorise (reassociated sums, fused multiply-adds) but not the ones that
# assume no inf or NaN: with those, an overflowing 1 − g/‖·‖ (a zero column) came out NaN instead of a zero shrink
FAST = {"nsz", "arcp", "contract", "reassoc", "afn"}


@njit(cache=True, boundscheck=False, fastmath=FAST)
def pdhg_steps(n_steps, rho_, W, v, U, pred, KtU, Wt, vt, Ut, predt, KtUt, gam, gamt, X, y, c2, Z, elim, free, factor,
               tau, kt, thr, gthr, sv, cw, src, dst, se, w, wbar, col, thv):
    """``n_steps`` steps of every problem, problem by problem (its rows stay in cache over its steps)."""
    B = W.shape[0]
    dt = W.dtype.type
    rho = dt(rho_)
    for b in range(B):
        for j in range(thv.shape[0]):
            thv[j] = thr[b] * factor[j]
        for step in range(n_steps):
            r = dt(0.0) if step == n_steps - 1 else rho
            primal_pass(W[b], KtU[b], KtUt[b], v[b], X, thv, free[b], factor, tau[b], kt[b], gthr[b], step > 0, rho, Wt[b], col)
            g = data_pass(W[b], Wt[b], v[b], vt[b], pred[b], predt[b], KtUt[b], X, y[b], c2[b], Z, elim, sv[b], cw[b], col, r, wbar)
            if elim:
                gamt[b, 0] = g
                gam[b, 0] += r * (g - gam[b, 0])
            edge_pass(U[b], Ut[b], KtUt[b], wbar, src, dst, se, w, step == n_steps - 1, rho)


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def primal_pass(W, KtU, KtUt, v, X, thv, free, factor, tau, kt, gthr, relax_ktu, rho, Wt, col):
    """W⁺ before its group shrink: soft-threshold of W − τλ KᵀŨ − τ Mᵀv on the free rows, the column norms into
    ``col``, then each column's shrink factor into ``col``. KᵀŨ of z is relaxed here from the previous step's scatter
    rather than in a pass of its own."""
    n, p = W.shape
    dt = W.dtype.type
    zero, one = dt(0.0), dt(1.0)
    for j in range(p):
        col[j] = zero
    for i in range(n):
        vi = tau * v[i]
        fr = free[i]
        if relax_ktu:
            for j in range(p):
                KtU[i, j] += rho * (KtUt[i, j] - KtU[i, j])
        for j in range(p):
            val = W[i, j] - kt * KtU[i, j] - vi * X[i, j]
            val = (val - min(max(val, -thv[j]), thv[j])) * fr
            Wt[i, j] = val
            col[j] += val * val
    for j in range(p):  # the group shrink of each column (0 where the norm is within its threshold)
        norm, g_j = np.sqrt(col[j]), gthr * factor[j]
        col[j] = one - g_j / norm if norm > g_j else zero


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def data_pass(W, Wt, v, vt, pred, predt, KtUt, X, y, c2, Z, elim, sv, cw, shrink, r, wbar):
    """W⁺ (shrunk), its prediction and the data dual's prox; 2W⁺ − W times the edge step into ``wbar``; z's W, pred and
    v relaxed (r); KᵀŨ⁺ zeroed for the edge pass's scatter. Returns γ⁺ where the intercept is eliminated: the prox of
    σ(φ* + ι{zᵀv = 0}) is v_i = k_i (a_i/σ_i − y_i + z_i γ) with γ from zᵀv = 0."""
    n, p = W.shape
    dt = W.dtype.type
    two, zero = dt(2.0), dt(0.0)
    tiny = np.finfo(W.dtype).tiny
    G = 0.0
    num = 0.0
    for i in range(n):
        acc = zero
        for j in range(p):
            w_new = Wt[i, j] * shrink[j]
            w_old = W[i, j]
            Wt[i, j] = w_new
            acc += X[i, j] * w_new
            wbar[i, j] = (two * w_new - w_old) * cw
            W[i, j] = w_old + r * (w_new - w_old)
            KtUt[i, j] = zero
        predt[i] = acc
        s_ = sv[i]
        arg = v[i] + s_ * (two * acc - pred[i])
        pred[i] += r * (acc - pred[i])
        if elim:
            kk = c2[i] * s_ / (c2[i] + s_)
            base = arg / s_ - y[i]
            vt[i] = base
            G += kk * Z[i] * Z[i]
            num += kk * Z[i] * base
        else:
            v_new = c2[i] * (arg - s_ * y[i]) / (c2[i] + s_)
            vt[i] = v_new
            v[i] += r * (v_new - v[i])
    if not elim:
        return dt(0.0)
    G = G + 1e-12 * max(G, tiny)
    g = dt(-(num / G))
    for i in range(n):
        s_ = sv[i]
        kk = c2[i] * s_ / (c2[i] + s_)
        v_new = kk * (vt[i] + Z[i] * g)
        vt[i] = v_new
        v[i] += r * (v_new - v[i])
    return g


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def edge_pass(U, Ut, KtUt, wbar, src, dst, se, w, last, rho):
    """The edge dual: clip(Ũ + σ_e K(2W⁺ − W)) scattered into KᵀŨ⁺ and relaxed in the same pass; the last step keeps
    Ũ and writes its step to Ũt instead."""
    m, p = U.shape
    dt = U.dtype.type
    one = dt(1.0)
    if last:
        for e in range(m):
            ea, eb, s_e, w_e = src[e], dst[e], se[e], w[e]
            for j in range(p):
                u = min(one, max(-one, U[e, j] + s_e * (wbar[ea, j] - wbar[eb, j])))
                KtUt[ea, j] += w_e * u
                KtUt[eb, j] -= w_e * u
                Ut[e, j] = u
    else:
        for e in range(m):
            ea, eb, s_e, w_e = src[e], dst[e], se[e], w[e]
            for j in range(p):
                u0 = U[e, j]
                u = min(one, max(-one, u0 + s_e * (wbar[ea, j] - wbar[eb, j])))
                KtUt[ea, j] += w_e * u
                KtUt[eb, j] -= w_e * u
                U[e, j] = u0 + rho * (u - u0)
