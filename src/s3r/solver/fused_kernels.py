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
def pdhg_steps(n_steps, rho_, relax_first, act, W, v, U, pred, KtU, Wt, vt, Ut, predt, KtUt, gam, gamt, X, y, c2, Z, elim, free,
               factor, tau, kt, thr, gthr, sv, cw, alpha, bsq, src, dst, se, w, wbar, col, thv, x2, ds, r_e, r_floor, sums, out):
    """``n_steps`` steps of the batch's problems ``act`` (indices into the state arrays; the per-problem step arrays
    tau … bsq are indexed by the position in ``act``), problem by problem (its rows stay in cache over its steps), then
    the check of the last step into ``out`` (len(act), 3): the relative primal and dual residuals and the objective at
    the step's output. ``relax_first``: z ← z + ρ(zt − z) before the first step (the solver's relaxation after its
    previous check)."""
    dt = W.dtype.type
    rho = dt(rho_)
    for q in range(act.shape[0]):
        b = act[q]
        for j in range(thv.shape[0]):
            thv[j] = thr[q] * factor[j]
        if relax_first:
            relax(W[b], Wt[b], rho)
            relax(U[b], Ut[b], rho)
            for i in range(W.shape[1]):
                v[b, i] += rho * (vt[b, i] - v[b, i])
                pred[b, i] += rho * (predt[b, i] - pred[b, i])
            if elim:
                gam[b, 0] += rho * (gamt[b, 0] - gam[b, 0])
        for step in range(n_steps):
            r = dt(0.0) if step == n_steps - 1 else rho
            primal_pass(W[b], KtU[b], KtUt[b], v[b], X, thv, free[b], factor, tau[q], kt[q], gthr[q], step > 0 or relax_first,
                        rho, Wt[b], col)
            g = data_pass(W[b], Wt[b], v[b], vt[b], pred[b], predt[b], KtUt[b], X, y[b], c2[b], Z, elim, sv[q], cw[q], col, r, wbar)
            if elim:
                gamt[b, 0] = g
                gam[b, 0] += r * (g - gam[b, 0])
            edge_pass(U[b], Ut[b], KtUt[b], wbar, src, dst, se, w, step == n_steps - 1, rho)
        g = gamt[b, 0] if elim else 0.0
        out[q, 0], out[q, 1], out[q, 2] = residuals(W[b], Wt[b], v[b], vt[b], pred[b], predt[b], KtU[b], KtUt[b], U[b], Ut[b], X, x2,
                                                    y[b], c2[b], Z, g, sv[q], tau[q], ds[q], cw[q], src, dst, w, r_e, r_floor,
                                                    factor, alpha[q], bsq[q], sums)


@njit(cache=True, boundscheck=False, fastmath=FAST)
def residuals(W, Wt, v, vt, pred, predt, KtU, KtUt, U, Ut, X, x2, y, c2, Z, g, sv, tau, ds, c, src, dst, w, r_e, r_floor,
              factor, alpha, bsq, sums):
    """The objective at the step's output (W⁺, γ⁺), the solver's ``objective``, and the residual check of primal_dual's ``residuals`` for the step z → zt of one problem, every part of it (the
    torch check skips the edge part only where it cannot decide, so the decisions are the same):

        P = (W − W⁺)/τ − Mᵀ(v − v⁺) − λ(KᵀŨ − KᵀŨ⁺),  scaled by max(‖Mᵀv⁺‖, λ‖KᵀŨ⁺‖, ‖P − Mᵀv⁺ − λKᵀŨ⁺‖)
        D = (v − v⁺)/σ_v − (MW − MW⁺) on the live spots, scaled by max(‖MW⁺ + zγ⁺‖, ‖y‖) there
        D_U = (Ũ − Ũ⁺)/σ_u − K(W − W⁺),  scaled by max(‖KW⁺‖, 1e-3 (R/2)^½ ‖W⁺‖)  (where λ > 0)

    The objective Σ c_i (y_i − (MW⁺ + zγ⁺)_i)² + α Σ_j f_j ‖W⁺_:j‖₁ + β√n Σ_j f_j ‖W⁺_:j‖₂ + λ ‖KW⁺‖₁ comes from the same
    passes (``sums``: (2, p) float64 scratch for the column sums). Sums in float64 whatever the solve's precision."""
    n, p = W.shape
    tiny = np.finfo(W.dtype).tiny
    p2 = gh2 = ktu2 = mv2 = dv2 = f2 = y2 = w2 = fit = 0.0
    for j in range(p):
        sums[0, j] = 0.0
        sums[1, j] = 0.0
    for i in range(n):
        dv = v[i] - vt[i]
        for j in range(p):
            P = (W[i, j] - Wt[i, j]) / tau - dv * X[i, j] - ds * (KtU[i, j] - KtUt[i, j])
            p2 += P * P
            gh = P - vt[i] * X[i, j] - ds * KtUt[i, j]
            gh2 += gh * gh
            ktu2 += KtUt[i, j] * KtUt[i, j]
            w2 += Wt[i, j] * Wt[i, j]
            sums[0, j] += abs(Wt[i, j])
            sums[1, j] += Wt[i, j] * Wt[i, j]
        mv2 += vt[i] * vt[i] * x2[i]
        if c2[i] > 0:
            d = dv / sv[i] - (pred[i] - predt[i])
            dv2 += d * d
            full = predt[i] + Z[i] * g
            f2 += full * full
            y2 += y[i] * y[i]
            fit += 0.5 * c2[i] * (y[i] - full) * (y[i] - full)
    scale_p = max(max(np.sqrt(mv2), ds * np.sqrt(ktu2)), np.sqrt(gh2))
    rel_p = np.sqrt(p2) / max(scale_p, tiny)
    rel_d = np.sqrt(dv2) / max(max(np.sqrt(f2), np.sqrt(y2)), tiny)
    l1 = l2 = 0.0
    for j in range(p):
        l1 += factor[j] * sums[0, j]
        l2 += factor[j] * np.sqrt(sums[1, j])
    obj = fit + alpha * l1 + bsq * l2
    if ds > 0 and c > 0:
        kw2 = du2 = tv = 0.0
        for e in range(src.shape[0]):
            a, b, w_e, inv = src[e], dst[e], w[e], r_e[e] / c
            for j in range(p):
                kw = w_e * (Wt[a, j] - Wt[b, j])
                kw2 += kw * kw
                tv += abs(kw)
                du = (U[e, j] - Ut[e, j]) * inv - w_e * ((W[a, j] - Wt[a, j]) - (W[b, j] - Wt[b, j]))
                du2 += du * du
        rel_d = max(rel_d, np.sqrt(du2) / max(max(np.sqrt(kw2), r_floor * np.sqrt(w2)), tiny))
        obj += ds * tv
    return rel_p, rel_d, obj


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def relax(A, At, rho):
    """A ← A + ρ(At − A) over a problem's rows."""
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            A[i, j] += rho * (At[i, j] - A[i, j])


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
