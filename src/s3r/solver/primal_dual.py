"""Preconditioned primal–dual hybrid gradient (Chambolle–Pock) for the S3R objective, batched.

    min_{W, γ}  h(W) + φ(M(W, γ)) + g(K W)

h is the sparse group lasso (exact prox, exact zeros), φ the data fit seen through the prediction operator M,
g the smoothness term (λ‖·‖₁ for tv / graph_l1, λ‖·‖² for quadratic). Both φ and g enter through their
conjugates, whose proxes are closed form:

    W⁺ = prox_{τh}(W − τ(Mᵀv + KᵀU)),            γ⁺ = γ − τ_γ Zᵀv
    v⁺ = prox_{Σ_v φ*}(v + Σ_v M(2W⁺ − W, 2γ⁺ − γ)),  U⁺ = prox_{σ g*}(U + σ K(2W⁺ − W))

Putting the data fit in the dual frees the primal step from its curvature bound, which on this rank-one-per-spot
fit is what makes a gradient step crawl; Σ_v is diagonal over spots (Pock & Chambolle 2011 preconditioning).
Convergence needs τ‖Σ^{1/2}𝒦‖² ≤ 1; we split that budget between the two dual blocks and keep it tight while
adapting τ by residual balancing (Goldstein et al. 2015), with a decaying number of changes.

Stopping: P ∈ ∂_W L and D ∈ ∂_{v,U} L at the new iterate (the primal and dual residuals); both below ``tol``
relative to the terms they balance certifies a solution.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from s3r.solver.penalties import batch_norm
from s3r.solver.result import SolveResult

SAFETY = 0.99
DATA_SHARE = 0.5  # share of the step budget given to the data-fit dual when a smoothness dual exists


def primal_dual(
    datafit,
    penalty,
    smooth,
    K,
    W0: torch.Tensor,
    gamma0: torch.Tensor | None,
    *,
    v0: torch.Tensor | None = None,
    U0: torch.Tensor | None = None,
    tau0: torch.Tensor | None = None,
    tol: float = 1e-6,
    max_iter: int = 50_000,
    check_every: int = 10,
    adapt: bool = True,
    callback=None,
) -> SolveResult:
    start = time.perf_counter()
    dtype, device = W0.dtype, W0.device
    n, B, p = W0.shape
    tiny = torch.finfo(dtype).tiny
    has_gamma = gamma0 is not None
    has_smooth = K is not None and smooth is not None
    R = float(K.norm_bound()) if has_smooth else 0.0
    lam = smooth.lam.view(-1) if has_smooth else torch.zeros(B, dtype=dtype, device=device)
    smooth_on = has_smooth and R > 0
    share = torch.where(lam > 0, torch.full_like(lam, DATA_SHARE), torch.ones_like(lam)) if smooth_on else torch.ones_like(lam)
    x2 = datafit.row_norms2()
    x2 = torch.clamp(x2, min=max(float(x2.mean()) * 1e-8, float(tiny)))
    kappa = 2.0 if has_gamma else 1.0  # block-diagonal majorant when γ shares the data dual

    def steps(tau):
        sigma_v = SAFETY * share.view(1, -1) / (kappa * tau.view(1, -1) * x2)  # (n, B)
        sigma_u = SAFETY * (1 - share) / (tau * max(R, 1e-300)) if smooth_on else torch.zeros_like(tau)
        tau_g = None
        if has_gamma:
            tau_g = SAFETY / torch.clamp(kappa * datafit.covariate_norm2(sigma_v), min=tiny)
        return sigma_v, sigma_u, tau_g

    tau = tau0.clone() if tau0 is not None else _initial_tau(datafit, lam, R, x2)
    sigma_v, sigma_u, tau_g = steps(tau)

    W = W0.clone()
    gamma = gamma0.clone() if has_gamma else None
    v = v0.clone() if v0 is not None else torch.zeros((n, B), dtype=dtype, device=device)
    U = None
    if smooth_on:
        U = U0.clone() if U0 is not None else torch.zeros((K.shape[0], B, p), dtype=dtype, device=device)
        U = smooth.dual_prox(U, sigma_u.view(1, -1, 1))
    KtU = K.adjoint(U) if smooth_on else None
    pred = datafit.predict(W, gamma)
    live = datafit.c > 0  # spots whose data dual is not pinned at 0 (o_i = 0)

    converged = torch.zeros(B, dtype=torch.bool, device=device)
    iterations = np.full(B, max_iter, dtype=np.int64)
    rel_p = torch.full((B,), float("inf"), dtype=dtype, device=device)
    rel_d = torch.full((B,), float("inf"), dtype=dtype, device=device)
    trace: list[dict] = []
    adapt_factor, adaptations_left = 2.0, 30
    it = 0
    for it in range(1, max_iter + 1):
        t3 = tau.view(1, -1, 1)
        base = W - t3 * KtU if smooth_on else W
        V = torch.addcmul(base, (-tau.view(1, -1) * v).unsqueeze(-1), datafit.X.unsqueeze(1))
        W_new = penalty.prox(V, tau)
        gamma_new = None
        if has_gamma:
            gamma_new = gamma - tau_g.view(-1, 1) * (v.T @ datafit.Z)
        pred_new = datafit.predict(W_new, gamma_new)
        v_new = datafit.dual_prox(v + sigma_v * (2 * pred_new - pred), sigma_v)
        if smooth_on:
            KWbar = K.forward(2 * W_new - W)
            U_new = smooth.dual_prox(U + sigma_u.view(1, -1, 1) * KWbar, sigma_u.view(1, -1, 1))
            KtU_new = K.adjoint(U_new)
        else:
            U_new, KtU_new = None, None

        if it % check_every == 0 or it == max_iter:
            dW = W - W_new
            dv = v - v_new
            MtdV, Ztdv = datafit.adjoint(dv)
            P = dW / t3 - MtdV
            MtV_new, _ = datafit.adjoint(v_new)
            scale_p = batch_norm(MtV_new)
            if smooth_on:
                P = P - (KtU - KtU_new)
                scale_p = torch.maximum(scale_p, batch_norm(KtU_new))
            p2 = (P * P).sum(dim=(0, 2))
            if has_gamma:
                Pg = (gamma - gamma_new) / tau_g.view(-1, 1) - Ztdv
                p2 = p2 + (Pg * Pg).sum(-1)
            rel_p = torch.sqrt(p2) / torch.clamp(scale_p, min=tiny)
            Dv = torch.where(live, dv / sigma_v - (pred - pred_new), torch.zeros_like(dv))
            scale_v = torch.maximum(torch.linalg.vector_norm(pred_new * live, dim=0), torch.linalg.vector_norm(datafit.y * live, dim=0))
            rel_d = torch.linalg.vector_norm(Dv, dim=0) / torch.clamp(scale_v, min=tiny)
            KW_new = None
            if smooth_on:
                KW_new = K.forward(W_new)
                safe_su = torch.where(sigma_u > 0, sigma_u, torch.ones_like(sigma_u)).view(1, -1, 1)
                DU = torch.where(lam.view(1, -1, 1) > 0, (U - U_new) / safe_su - K.forward(dW), torch.zeros_like(U))
                scale_u = torch.maximum(batch_norm(KW_new), 1e-3 * (R / 2) ** 0.5 * batch_norm(W_new))
                rel_d = torch.maximum(rel_d, batch_norm(DU) / torch.clamp(scale_u, min=tiny))
            newly = (~converged) & (rel_p <= tol) & (rel_d <= tol)
            for b in torch.nonzero(newly).flatten().tolist():
                iterations[b] = it
            converged |= newly
            if it % (check_every * 10) == 0:
                obj = datafit.value(pred_new) + penalty.value(W_new)
                if smooth_on:
                    obj = obj + smooth.value(KW_new)
                entry = {"iteration": it, "objective": obj.tolist(), "primal_residual": rel_p.tolist(), "dual_residual": rel_d.tolist()}
                trace.append(entry)
                if callback is not None:
                    callback(entry)
            if bool(converged.all()):
                W, gamma, v, U, pred = W_new, gamma_new, v_new, U_new, pred_new
                break
            if adapt and adaptations_left > 0 and it % (check_every * 5) == 0:
                # residual balancing: a lagging primal residual asks for a larger primal step
                grow = (rel_p > 5 * rel_d) & ~converged
                shrink = (rel_d > 5 * rel_p) & ~converged
                if bool(grow.any() or shrink.any()):
                    tau = torch.where(grow, tau * adapt_factor, torch.where(shrink, tau / adapt_factor, tau))
                    sigma_v, sigma_u, tau_g = steps(tau)
                    adaptations_left -= 1
                    adapt_factor = max(1.1, adapt_factor**0.9)

        W, gamma, v, U, KtU, pred = W_new, gamma_new, v_new, U_new, KtU_new, pred_new

    objective = datafit.value(datafit.predict(W, gamma)) + penalty.value(W)
    if smooth_on:
        objective = objective + smooth.value(K.forward(W))
    return SolveResult(
        W=W,
        gamma=gamma,
        dual=U,
        data_dual=v,
        objective=objective.double().cpu().numpy(),
        primal_residual=rel_p.double().cpu().numpy(),
        dual_residual=rel_d.double().cpu().numpy(),
        converged=converged.cpu().numpy(),
        iterations=np.minimum(iterations, it),
        seconds=time.perf_counter() - start,
        method="pdhg",
        step=tau.double().cpu().numpy(),
        trace=trace,
    )


def _initial_tau(datafit, lam, R, x2):
    """A primal step matched to the magnitudes: |W| ~ |y|/‖x‖ against duals |v| ~ |y|/n and |U| ~ λ."""
    o = datafit.o
    y_scale = torch.sqrt((o * datafit.y**2).sum(0) / torch.clamp(o.sum(0), min=1)).clamp_min(1e-12)
    x_norm = torch.sqrt(x2.mean())
    w_scale = y_scale / x_norm
    v_scale = 2 * y_scale / datafit.n
    tau_data = w_scale / (v_scale * x_norm)
    if R > 0:
        tau_smooth = w_scale / (torch.clamp(lam, min=1e-12) * R**0.5)
        return torch.where(lam > 0, torch.sqrt(tau_data * tau_smooth), tau_data)
    return tau_data
