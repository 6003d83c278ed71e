"""The numba kernels of :mod:`s3r.solver.fused_cpu`: k PDHG steps of one *tile* of a batch — a few problems side by
side — as three passes per step (primal over the nodes, data dual over the nodes, edge dual over the edges), then
the residual check of the last step.

A tile's arrays hold its T problems interleaved within each row: (n, T·p) for the coefficients, (m, T·p) for the edge
dual, (n, T) for the per-spot fields, so one edge's T·p dual entries are contiguous. Why: the edge pass costs ~15 ns
an edge whatever p is (a gather of two node rows, a scatter into two, one short inner loop): with one problem at a
time a row of 6–25 floats pays it for every problem; with T problems in the row it is paid once for T·p floats
(3,600 nodes, 10,600 edges, p = 18, float32: 14.4 ns an edge-problem alone, 4.6 with T = 8; benchmarks/README.md,
session 27). X (n, p), Z, the edge arrays and the penalty factors are shared. ``r`` is the relaxation of the step (ρ,
or 0 on the last step: z then stays unrelaxed beside its step zt for the caller's residual check). No branch sits
inside an inner loop, so they vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# LLVM's fast-math flags that let the loops vectorise (reassociated sums, fused multiply-adds) but not the ones that
# assume no inf or NaN: with those, an overflowing 1 − g/‖·‖ (a zero column) came out NaN instead of a zero shrink
FAST = {"nsz", "arcp", "contract", "reassoc", "afn"}

# rows of the float64 scratch ``acc``: 0–1 the column sums |W⁺|, W⁺²; 2–10 per-problem sums of the check's node part;
# 11–13 per-column sums of its edge part (from the last step's edge pass); 14 σ_u's inverse per column; 15–16 the
# data pass's per-problem sums for the intercept's elimination
P2, GH2, KTU2, W2, MV2, DV2, F2, Y2, FIT, KW2, DU2, TV, INV, ZZ, ZB = range(2, 17)
ACC_ROWS = 17


@njit(cache=True, boundscheck=False, fastmath=FAST)
def pdhg_tile(n_steps, rho_, relax_first, p, W, v, U, pred, KtU, Wt, vt, Ut, predt, KtUt, gam, gamt, X, y, c2, Z, elim, free,
              factor, tau, kt, thr, gthr, sv, cw, alpha, bsq, src, dst, se, w, wbar, col, thv, x2, ds, r_e, r_floor, acc, out):
    """``n_steps`` steps of a tile's T problems (the per-problem arrays tau … bsq, ds have length T), then the check
    of the last step into ``out`` (T, 3): the relative primal and dual residuals and the objective at the step's
    output. ``relax_first``: z ← z + ρ(zt − z) before the first step (the solver's relaxation after its previous
    check). ``acc``: (ACC_ROWS, max(T·p, 2)) float64 scratch."""
    dt = W.dtype.type
    rho = dt(rho_)
    T = tau.shape[0]
    for q in range(T):
        for j in range(p):
            thv[q * p + j] = thr[q] * factor[j]
            acc[KW2, q * p + j] = acc[DU2, q * p + j] = acc[TV, q * p + j] = 0.0
            acc[INV, q * p + j] = 1.0 / cw[q] if ds[q] > 0 and cw[q] > 0 else 0.0  # σ_u's inverse is r_e / c
    if relax_first:
        relax(W, Wt, rho)
        relax(U, Ut, rho)
        relax(v, vt, rho)
        relax(pred, predt, rho)
        if elim:
            for q in range(T):
                gam[q] += rho * (gamt[q] - gam[q])
    for step in range(n_steps):
        r = dt(0.0) if step == n_steps - 1 else rho
        primal_pass(W, KtU, KtUt, v, X, thv, free, factor, tau, kt, gthr, step > 0 or relax_first, rho, Wt, col, p)
        data_pass(W, Wt, v, vt, pred, predt, KtUt, X, y, c2, Z, elim, sv, cw, col, r, wbar, gam, gamt, acc, p)
        if step < n_steps - 1:
            edge_pass(U, Ut, KtUt, wbar, src, dst, se, w, rho)
        else:  # the last step: the check's edge sums in the same pass
            last_edge_pass(U, Ut, KtUt, wbar, src, dst, se, w, W, Wt, r_e, acc)
    residuals(W, Wt, v, vt, pred, predt, KtU, KtUt, X, x2, y, c2, Z, gamt, elim, sv, tau, ds, cw, r_floor, factor, alpha, bsq,
              acc, out, p)


@njit(cache=True, boundscheck=False, fastmath=FAST)
def residuals(W, Wt, v, vt, pred, predt, KtU, KtUt, X, x2, y, c2, Z, gamt, elim, sv, tau, ds, c, r_floor, factor, alpha, bsq,
              acc, out, p):
    """The objective at the step's output (W⁺, γ⁺), the solver's ``objective``, and the residual check of primal_dual's
    ``residuals`` for the step z → zt of each problem of the tile, every part of it (the torch check skips the edge part
    only where it cannot decide, so the decisions are the same):

        P = (W − W⁺)/τ − Mᵀ(v − v⁺) − λ(KᵀŨ − KᵀŨ⁺),  scaled by max(‖Mᵀv⁺‖, λ‖KᵀŨ⁺‖, ‖P − Mᵀv⁺ − λKᵀŨ⁺‖)
        D = (v − v⁺)/σ_v − (MW − MW⁺) on the live spots, scaled by max(‖MW⁺ + zγ⁺‖, ‖y‖) there
        D_U = (Ũ − Ũ⁺)/σ_u − K(W − W⁺),  scaled by max(‖KW⁺‖, 1e-3 (R/2)^½ ‖W⁺‖)  (where λ > 0)

    The objective Σ c_i (y_i − (MW⁺ + zγ⁺)_i)² + α Σ_j f_j ‖W⁺_:j‖₁ + β√n Σ_j f_j ‖W⁺_:j‖₂ + λ ‖KW⁺‖₁ comes from the same
    passes. The edge part's sums (‖KW⁺‖², ‖D_U‖², ‖KW⁺‖₁ per column) come from the last step's edge pass
    (:func:`last_edge_pass`), which has the rows in hand: a pass of its own over the edges was half the check's cost.
    Sums in float64 whatever the solve's precision."""
    n = W.shape[0]
    T = tau.shape[0]
    tiny = np.finfo(W.dtype).tiny
    acc[0:FIT + 1, :] = 0.0
    for i in range(n):
        for q in range(T):
            o = q * p
            dv = v[i, q] - vt[i, q]
            tq, dq, vq = tau[q], ds[q], vt[i, q]
            p2 = gh2 = ktu2 = w2 = 0.0
            for j in range(p):
                P = (W[i, o + j] - Wt[i, o + j]) / tq - dv * X[i, j] - dq * (KtU[i, o + j] - KtUt[i, o + j])
                p2 += P * P
                gh = P - vq * X[i, j] - dq * KtUt[i, o + j]
                gh2 += gh * gh
                ktu2 += KtUt[i, o + j] * KtUt[i, o + j]
                w2 += Wt[i, o + j] * Wt[i, o + j]
                acc[0, o + j] += abs(Wt[i, o + j])
                acc[1, o + j] += Wt[i, o + j] * Wt[i, o + j]
            acc[P2, q] += p2
            acc[GH2, q] += gh2
            acc[KTU2, q] += ktu2
            acc[W2, q] += w2
            acc[MV2, q] += vq * vq * x2[i]
            if c2[i, q] > 0:
                d = dv / sv[i, q] - (pred[i, q] - predt[i, q])
                acc[DV2, q] += d * d
                full = predt[i, q] + (Z[i] * gamt[q] if elim else 0.0)
                acc[F2, q] += full * full
                acc[Y2, q] += y[i, q] * y[i, q]
                acc[FIT, q] += 0.5 * c2[i, q] * (y[i, q] - full) * (y[i, q] - full)
    for q in range(T):
        scale_p = max(max(np.sqrt(acc[MV2, q]), ds[q] * np.sqrt(acc[KTU2, q])), np.sqrt(acc[GH2, q]))
        rel_p = np.sqrt(acc[P2, q]) / max(scale_p, tiny)
        rel_d = np.sqrt(acc[DV2, q]) / max(max(np.sqrt(acc[F2, q]), np.sqrt(acc[Y2, q])), tiny)
        l1 = l2 = kw2 = du2 = tv = 0.0
        for j in range(p):
            l1 += factor[j] * acc[0, q * p + j]
            l2 += factor[j] * np.sqrt(acc[1, q * p + j])
            kw2 += acc[KW2, q * p + j]
            du2 += acc[DU2, q * p + j]
            tv += acc[TV, q * p + j]
        obj = acc[FIT, q] + alpha[q] * l1 + bsq[q] * l2
        if ds[q] > 0 and c[q] > 0:
            rel_d = max(rel_d, np.sqrt(du2) / max(max(np.sqrt(kw2), r_floor * np.sqrt(acc[W2, q])), tiny))
            obj += ds[q] * tv
        out[q, 0], out[q, 1], out[q, 2] = rel_p, rel_d, obj


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def relax(A, At, rho):
    """A ← A + ρ(At − A) over a tile's rows."""
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            A[i, j] += rho * (At[i, j] - A[i, j])


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def primal_pass(W, KtU, KtUt, v, X, thv, free, factor, tau, kt, gthr, relax_ktu, rho, Wt, col, p):
    """W⁺ before its group shrink: soft-threshold of W − τλ KᵀŨ − τ Mᵀv on the free rows, the column norms into
    ``col``, then each column's shrink factor into ``col``. KᵀŨ of z is relaxed here from the previous step's scatter
    rather than in a pass of its own."""
    n, L = W.shape
    T = tau.shape[0]
    dt = W.dtype.type
    zero, one = dt(0.0), dt(1.0)
    for k in range(L):
        col[k] = zero
    for i in range(n):
        if relax_ktu:
            for k in range(L):
                KtU[i, k] += rho * (KtUt[i, k] - KtU[i, k])
        for q in range(T):
            o = q * p
            vi, ktq, fr = tau[q] * v[i, q], kt[q], free[i, q]
            for j in range(p):
                val = W[i, o + j] - ktq * KtU[i, o + j] - vi * X[i, j]
                val = (val - min(max(val, -thv[o + j]), thv[o + j])) * fr
                Wt[i, o + j] = val
                col[o + j] += val * val
    for q in range(T):  # the group shrink of each column (0 where the norm is within its threshold)
        for j in range(p):
            norm, g_j = np.sqrt(col[q * p + j]), gthr[q] * factor[j]
            col[q * p + j] = one - g_j / norm if norm > g_j else zero


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def data_pass(W, Wt, v, vt, pred, predt, KtUt, X, y, c2, Z, elim, sv, cw, shrink, r, wbar, gam, gamt, acc, p):
    """W⁺ (shrunk), its prediction and the data dual's prox; 2W⁺ − W times the edge step into ``wbar``; z's W, pred and
    v relaxed (r); KᵀŨ⁺ zeroed for the edge pass's scatter; γ⁺ into ``gamt`` where the intercept is eliminated: the
    prox of σ(φ* + ι{zᵀv = 0}) is v_i = k_i (a_i/σ_i − y_i + z_i γ) with γ from zᵀv = 0."""
    n, L = W.shape
    T = cw.shape[0]
    dt = W.dtype.type
    two, zero = dt(2.0), dt(0.0)
    tiny = np.finfo(W.dtype).tiny
    for q in range(T):
        acc[ZZ, q] = 0.0  # Σ k z²
        acc[ZB, q] = 0.0  # Σ k z (a/σ − y)
    for i in range(n):
        for k in range(L):
            KtUt[i, k] = zero
        for q in range(T):
            o, cwq = q * p, cw[q]
            a = zero
            for j in range(p):
                w_new = Wt[i, o + j] * shrink[o + j]
                w_old = W[i, o + j]
                Wt[i, o + j] = w_new
                a += X[i, j] * w_new
                wbar[i, o + j] = (two * w_new - w_old) * cwq
                W[i, o + j] = w_old + r * (w_new - w_old)
            predt[i, q] = a
            s_ = sv[i, q]
            arg = v[i, q] + s_ * (two * a - pred[i, q])
            pred[i, q] += r * (a - pred[i, q])
            if elim:
                kk = c2[i, q] * s_ / (c2[i, q] + s_)
                base = arg / s_ - y[i, q]
                vt[i, q] = base
                acc[ZZ, q] += kk * Z[i] * Z[i]
                acc[ZB, q] += kk * Z[i] * base
            else:
                v_new = c2[i, q] * (arg - s_ * y[i, q]) / (c2[i, q] + s_)
                vt[i, q] = v_new
                v[i, q] += r * (v_new - v[i, q])
    if not elim:
        return
    for q in range(T):
        G = acc[ZZ, q] + 1e-12 * max(acc[ZZ, q], tiny)
        g = dt(-(acc[ZB, q] / G))
        gamt[q] = g
        gam[q] += r * (g - gam[q])
    for i in range(n):
        for q in range(T):
            s_ = sv[i, q]
            kk = c2[i, q] * s_ / (c2[i, q] + s_)
            v_new = kk * (vt[i, q] + Z[i] * gamt[q])
            vt[i, q] = v_new
            v[i, q] += r * (v_new - v[i, q])


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def edge_pass(U, Ut, KtUt, wbar, src, dst, se, w, rho):
    """The edge dual: clip(Ũ + σ_e K(2W⁺ − W)) scattered into KᵀŨ⁺ and relaxed in the same pass. One inner loop over
    the row's T·p entries: the tile's problems share the edge's steps and weights (each problem's own step is folded
    into ``wbar``)."""
    m, L = U.shape
    one = U.dtype.type(1.0)
    for e in range(m):
        ea, eb, s_e, w_e = src[e], dst[e], se[e], w[e]
        for k in range(L):
            u0 = U[e, k]
            u = min(one, max(-one, u0 + s_e * (wbar[ea, k] - wbar[eb, k])))
            KtUt[ea, k] += w_e * u
            KtUt[eb, k] -= w_e * u
            U[e, k] = u0 + rho * (u - u0)


@njit(cache=True, boundscheck=False, fastmath=FAST, inline="always")
def last_edge_pass(U, Ut, KtUt, wbar, src, dst, se, w, W, Wt, r_e, acc):
    """The last step's edge pass: Ũ kept, its step written to Ũt, and the residual check's edge part summed per column
    (acc rows KW2, DU2, TV; W is z's unrelaxed primal here):

        D_U = (Ũ − Ũ⁺)/σ_u − K(W − W⁺),  KW⁺ (its squared norm and its ℓ1 norm, the objective's smoothness term)

    The clip and scatter are written out here as in :func:`edge_pass` on purpose: shared through an inlined helper,
    the edge pass no longer vectorised (0.19 → 0.35 ms a problem-step at p = 25; session 27)."""
    m, L = U.shape
    one = U.dtype.type(1.0)
    for e in range(m):
        ea, eb, s_e, w_e, re = src[e], dst[e], se[e], w[e], r_e[e]
        for k in range(L):
            u0 = U[e, k]
            u = min(one, max(-one, u0 + s_e * (wbar[ea, k] - wbar[eb, k])))
            KtUt[ea, k] += w_e * u
            KtUt[eb, k] -= w_e * u
            Ut[e, k] = u
            kw = w_e * (Wt[ea, k] - Wt[eb, k])
            acc[KW2, k] += kw * kw
            acc[TV, k] += abs(kw)
            du = (u0 - u) * (re * acc[INV, k]) - w_e * ((W[ea, k] - Wt[ea, k]) - (W[eb, k] - Wt[eb, k]))
            acc[DU2, k] += du * du
