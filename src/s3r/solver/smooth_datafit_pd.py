"""Condat–Vũ primal–dual splitting for S3R with a GLM data fit (poisson, negative binomial, gamma), batched.

    min_{W, γ}  f(W, γ) + h(W) + g(K W),     f = (1/n) Σ_i o_i d(y_i, μ_i),  log μ_i = ⟨x_i, W_i⟩ + ⟨z_i, γ⟩ + offset_i

f is the mean deviance (the gaussian S3R fit (1/n) Σ o_i (y_i − ŷ_i)² is the gaussian deviance, so λ, α, β mean
the same across families). Unlike the squared loss, f has no closed-form conjugate prox and no global Lipschitz
constant (exp grows without bound), so it enters by its gradient:

    (W⁺, γ⁺) = (prox_{τh}(W − τ(∇_W f + KᵀU)), γ − τ ∇_γ f)
    U⁺ = prox_{σ g*}(U + σ K(2W⁺ − W))

which converges when τ (L/2 + σ‖K‖²) ≤ 1 (Condat 2013; Vũ 2013). L is only local, so it is found by
backtracking: a step is accepted when f(x⁺) ≤ f(x) + ⟨∇f(x), x⁺ − x⟩ + (L/2)‖x⁺ − x‖², else L doubles and the step
is redone (per problem; L only grows, so it settles after finitely many doublings on the bounded iterates).
σ is set by residual balancing a finite, decaying number of times. h (sparse group lasso) and g (graph ℓ1
or quadratic) are the existing penalty objects, so every smoothness mode works with every family.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch

from s3r.solver.device import cpu_threads, resolve_device, resolve_dtype
from s3r.solver.penalties import GraphL1, GraphQuadratic, SparseGroupLasso, batch_norm, per_problem_sum
from s3r.solver.result import SolveResult
from s3r.solver.support import prune_numerical_zeros

ADAPT_RATIO, ADAPT_MAX = 5.0, 40


class GLMDatafit:
    """f(W, γ) = Σ_i c_i d(y_i, μ_i) with c_i = o_i / n; W (n, B, p), γ (B, q), everything else (n, B)."""

    def __init__(self, X, Y, weights, offset, covariates, family):
        self.X, self.y, self.o, self.Z, self.family = X, Y, weights, covariates, family
        self.off = offset
        self.n = X.shape[0]
        self.c = weights / self.n

    def eta(self, W, gamma):
        e = torch.linalg.vecdot(W, self.X.unsqueeze(1))
        if self.Z is not None:
            e = e + self.Z @ gamma.T
        return e if self.off is None else e + self.off

    def value(self, eta):
        return 2 * (self.c * self.family.loss(self.y, eta)).sum(0)

    def nll_value(self, eta):
        """:meth:`value` up to a term in y alone, for comparisons at fixed y (no y log y)."""
        return 2 * (self.c * self.family.nll(self.y, eta)).sum(0)

    def grad_eta(self, eta):
        return 2 * self.c * self.family.gradient(self.y, eta)

    def grads(self, eta):
        g = self.grad_eta(eta)
        gW = g.unsqueeze(-1) * self.X.unsqueeze(1)
        gZ = g.T @ self.Z if self.Z is not None else None
        return gW, gZ

    def lipschitz_estimate(self, eta):
        """Local curvature bound at η: the W-block is block diagonal over spots; the γ-block by Gershgorin."""
        ch = 2 * self.c * self.family.weight(self.y, eta)  # (n, B)
        L = (ch * (self.X * self.X).sum(1, keepdim=True)).max(0).values
        if self.Z is not None:
            L = L + (ch * (self.Z * self.Z).sum(1, keepdim=True)).sum(0)
        return torch.clamp(2 * L, min=1e-12)


def _profile_gamma(datafit: GLMDatafit, W, gamma, max_newton: int = 50):
    """γ*(W) = argmin_γ f(W, γ) by damped Newton (q is small), warm-started from ``gamma``.

    The unpenalised covariates (an intercept first of all) are minimised out rather than stepped: the profile
    f̃(W) = min_γ f(W, γ) is smooth with ∇f̃(W) = ∇_W f(W, γ*(W)) and the same curvature bound, so the splitting
    runs on W alone, and the intercept, which gradient steps moved slowest of all, is exact at every iterate.

    It runs at every iterate and backtracking step of the solver (95 % of a count-family tuning fold on DLPFC before
    session 31), so its line search compares the data fit without its terms in y alone (``Family.nll``: no y log y),
    keeps the accepted candidate's value, and a Newton step already below the tolerance ends it without one.
    """
    Z = datafit.Z
    base = datafit.eta(W, torch.zeros_like(gamma))
    q = Z.shape[1]
    eye = torch.eye(q, dtype=W.dtype, device=W.device)
    # below these a step cannot change γ or f in this precision (float32: ~1e-7 of γ), so a problem stops there
    eps = torch.finfo(W.dtype).eps
    step_floor = max(1e-10, 4 * eps)
    eta = base + Z @ gamma.T
    f0 = datafit.nll_value(eta)
    active = torch.ones(gamma.shape[0], dtype=torch.bool, device=W.device)
    for _ in range(max_newton):
        g = datafit.grad_eta(eta)  # (n, B)
        h = 2 * datafit.c * datafit.family.weight(datafit.y, eta)
        grad = g.T @ Z  # (B, q)
        H = torch.einsum("nb,nq,nr->bqr", h, Z, Z)
        ridge = 1e-12 * torch.clamp(torch.diagonal(H, dim1=1, dim2=2).amax(-1), min=torch.finfo(W.dtype).tiny)
        step = torch.linalg.solve(H + ridge.view(-1, 1, 1) * eye, grad.unsqueeze(-1)).squeeze(-1)
        active &= ~(step.abs() <= step_floor * (1 + gamma.abs())).all(-1)
        if not bool(active.any()):
            break
        # a decrease f cannot resolve in this precision: the full Newton step, without a line search (f is convex
        # in γ and the step is inside Newton's quadratic region)
        unresolved = (grad * step).sum(-1) <= 100 * eps * f0.abs()
        t = torch.ones(gamma.shape[0], dtype=W.dtype, device=W.device)
        for _ in range(30):  # halve per problem until the value does not rise
            cand = gamma - t.view(-1, 1) * step
            f1 = datafit.nll_value(base + Z @ cand.T)
            bad = ~(f1 <= f0 + 1e-13 * f0.abs()) & active & ~unresolved
            if not bool(bad.any()):
                break
            t = torch.where(bad, t / 2, t)
        keep = bad | ~active
        gamma = torch.where(keep.view(-1, 1), gamma, cand)
        f0 = torch.where(keep, f0, f1)
        active &= ~bad  # no decrease in 30 halvings: γ is at this precision's optimum
        eta = base + Z @ gamma.T
        active &= ~((t.view(-1, 1) * step).abs() <= step_floor * (1 + gamma.abs())).all(-1)
        if not bool(active.any()):
            break
    return gamma, eta, datafit.value(eta)


def _sq(T):
    return per_problem_sum(T * T) if T.dim() > 2 else (T * T).sum(-1)


def solve_glm(datafit: GLMDatafit, penalty: SparseGroupLasso, smooth, K, W0, gamma0, *, tol=1e-6, max_iter=50_000, check_every=10, callback=None) -> SolveResult:
    start = time.perf_counter()
    n, B, p = W0.shape
    dt, dev = W0.dtype, W0.device
    tiny = torch.finfo(dt).tiny
    has_g = gamma0 is not None
    R = float(K.norm_bound()) if (K is not None and smooth is not None) else 0.0
    smooth_on = R > 0
    lam = smooth.lam.view(-1) if smooth_on else torch.zeros(B, dtype=dt, device=dev)
    lam_on = lam.view(1, -1, 1) > 0

    W, gamma = W0.clone(), (gamma0.clone() if has_g else None)
    if has_g:
        gamma, eta, fval = _profile_gamma(datafit, W, gamma)
    else:
        eta = datafit.eta(W, gamma)
        fval = datafit.value(eta)
    gW, gZ = datafit.grads(eta)
    L = datafit.lipschitz_estimate(eta)
    sigma = 1.0 / (L * max(R, 1e-300)) if smooth_on else torch.zeros(B, dtype=dt, device=dev)
    U = torch.zeros((K.shape[0], B, p), dtype=dt, device=dev) if smooth_on else None
    KtU = torch.zeros_like(W) if smooth_on else None

    def tau_of(L, sigma):
        return 1.0 / (L / 2 + sigma * R)

    converged = torch.zeros(B, dtype=torch.bool, device=dev)
    iterations = np.full(B, max_iter, dtype=np.int64)
    rel_p = torch.full((B,), float("inf"), dtype=dt, device=dev)
    rel_d = torch.full((B,), float("inf"), dtype=dt, device=dev)
    trace = []
    adapt_left, adapt_factor = ADAPT_MAX, 2.0
    backtracks = 0
    it = 0
    for it in range(1, max_iter + 1):
        for _ in range(60):  # backtracking on L
            tau = tau_of(L, sigma)
            t3 = tau.view(1, -1, 1)
            V = W - t3 * (gW + KtU) if smooth_on else W - t3 * gW
            W1 = penalty.prox(V, tau)
            if has_g:  # the covariates at their optimum given W1: the step is on the profile f̃(W)
                g1, eta1, f1 = _profile_gamma(datafit, W1, gamma)
            else:
                g1 = None
                eta1 = datafit.eta(W1, g1)
                f1 = datafit.value(eta1)
            dW = W1 - W
            lin = per_problem_sum(gW * dW)
            d2 = _sq(dW)
            bad = ~(f1 <= fval + lin + 0.5 * L * d2 + 1e-12 * fval.abs()) & ~converged
            if not bool(bad.any()):
                break
            L = torch.where(bad, 2 * L, L)
            backtracks += 1
        gW1, gZ1 = datafit.grads(eta1)
        if smooth_on:
            U1 = smooth.dual_prox(U + sigma.view(1, -1, 1) * K.forward(2 * W1 - W), sigma.view(1, -1, 1))
            KtU1 = K.adjoint(U1)

        if it % check_every == 0 or it == max_iter:
            P = -dW / t3 - gW + gW1
            g_h = -dW / t3 - gW
            scale_p = torch.maximum(batch_norm(gW1), batch_norm(g_h))
            if smooth_on:
                P = P - KtU + KtU1
                g_h = g_h - KtU
                scale_p = torch.maximum(scale_p, torch.maximum(batch_norm(KtU1), batch_norm(g_h)))
            p2 = _sq(P)
            if has_g:  # γ is minimised exactly; its stationarity residual (≈ 0) joins the primal residual
                p2 = p2 + (gZ1 * gZ1).sum(-1)
            rel_p = torch.sqrt(p2) / torch.clamp(scale_p, min=tiny)
            if smooth_on:
                D = torch.where(lam_on, (U - U1) / sigma.view(1, -1, 1) + K.forward(dW), torch.zeros_like(U))
                KW1 = K.forward(W1)
                scale_d = torch.maximum(batch_norm(KW1), 1e-3 * (R / 2) ** 0.5 * batch_norm(W1))
                rel_d = batch_norm(D) / torch.clamp(scale_d, min=tiny)
            else:
                rel_d = torch.zeros_like(rel_p)
            newly = (~converged) & (rel_p <= tol) & (rel_d <= tol)
            for b in torch.nonzero(newly).flatten().tolist():
                iterations[b] = it
            converged |= newly
            if it % (check_every * 10) == 0:
                obj = f1 + penalty.value(W1) + (smooth.value(K.forward(W1)) if smooth_on else 0)
                entry = {"iteration": it, "objective": obj.tolist(), "primal_residual": rel_p.tolist(), "dual_residual": rel_d.tolist()}
                trace.append(entry)
                if callback is not None:
                    callback(entry)
            if smooth_on and adapt_left > 0 and it % (check_every * 5) == 0:
                # a lagging dual residual asks for a larger dual step (and so a smaller primal one)
                grow = (rel_d > ADAPT_RATIO * rel_p) & ~converged
                shrink = (rel_p > ADAPT_RATIO * rel_d) & ~converged
                if bool(grow.any() or shrink.any()):
                    sigma = torch.where(grow, sigma * adapt_factor, torch.where(shrink, sigma / adapt_factor, sigma))
                    adapt_left -= 1
                    adapt_factor = max(1.1, adapt_factor**0.9)
        W, gamma, eta, fval, gW, gZ = W1, g1, eta1, f1, gW1, gZ1
        if smooth_on:
            U, KtU = U1, KtU1
        if bool(converged.all()):
            break

    obj = fval + penalty.value(W) + (smooth.value(K.forward(W)) if smooth_on else 0)
    return SolveResult(
        W=W, gamma=gamma, dual=U, data_dual=None,
        objective=obj.double().cpu().numpy(),
        primal_residual=rel_p.double().cpu().numpy(), dual_residual=rel_d.double().cpu().numpy(),
        converged=converged.cpu().numpy(), iterations=np.minimum(iterations, it),
        seconds=time.perf_counter() - start, method=f"condat-vu-{datafit.family.name}",
        step=tau_of(L, sigma).double().cpu().numpy(), trace=trace + [{"backtracks": backtracks}],
    )


def solve_glm_batch(
    X, Y, *, family, smooth, operator, lambda_smooth, alpha, beta, weights=None, free_rows=None, covariates=None,
    offset=None, penalty_factor=None, W0=None, gamma0=None, tol=1e-6, max_iter=50_000, device="auto", dtype="float64",
    callback=None, theta=None,
) -> SolveResult:
    """Like :func:`s3r.solver.solve_batch` with a GLM family; ``offset`` (n,) or (n, B) is added to η; NB θ is fixed here (default 1)."""
    from s3r.glm.families import get_family
    from s3r.solver.batch import SMOOTH_MODES, _per_problem

    if smooth not in SMOOTH_MODES:
        raise ValueError(f"smooth must be one of {SMOOTH_MODES}, got {smooth!r}")
    fam = get_family(family, theta)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    X = np.asarray(X, dtype=np.float64)
    n, p = X.shape
    Y = np.asarray(Y, dtype=np.float64).reshape(n, -1)
    B = Y.shape[1]

    def nb(a, default):
        a = np.full((n, B), default) if a is None else np.asarray(a, dtype=np.float64)
        return np.broadcast_to(a.reshape(n, -1), (n, B))

    t = lambda a: torch.as_tensor(np.array(a, dtype=np.float64), dtype=dt, device=dev)  # noqa: E731
    Yt = t(Y)
    fam.check_response(Yt, "response")
    Ft = t(nb(free_rows, 1.0))
    Zt = t(np.asarray(covariates, dtype=np.float64).reshape(n, -1)) if covariates is not None and np.size(covariates) else None
    datafit = GLMDatafit(t(X), Yt, t(nb(weights, 1.0)), None if offset is None else t(nb(offset, 0.0)), Zt, fam)
    pf = t(np.ones(p) if penalty_factor is None else penalty_factor)
    penalty = SparseGroupLasso(_per_problem(alpha, B, "alpha", dt, dev), _per_problem(beta, B, "beta", dt, dev), pf, n, Ft)
    lam = _per_problem(lambda_smooth, B, "lambda_smooth", dt, dev)
    smooth_term = None if operator is None else (GraphQuadratic(lam) if smooth == "quadratic" else GraphL1(lam))
    Wt = torch.zeros((n, B, p), dtype=dt, device=dev) if W0 is None else torch.as_tensor(W0, dtype=dt, device=dev).reshape(n, B, p) * Ft.unsqueeze(-1)
    gt = None
    if Zt is not None:
        gt = torch.zeros((B, Zt.shape[1]), dtype=dt, device=dev) if gamma0 is None else torch.as_tensor(np.asarray(gamma0), dtype=dt, device=dev).reshape(B, -1)
    n_entries = max(n, operator.shape[0] if operator is not None else 0) * B * p
    with cpu_threads(dev, n_entries):
        result = solve_glm(datafit, penalty, smooth_term, operator, Wt, gt, tol=tol, max_iter=max_iter, callback=callback)
        result.W, result.zeroed = prune_numerical_zeros(datafit, penalty, smooth_term, operator, result.W,
                                                        gradient=partial(_glm_gradient, gamma=result.gamma))
    return result


def _glm_gradient(datafit: GLMDatafit, b: int, W_b, free_b, *, gamma):
    """Problem b's ∂f/∂η at W_b with the covariates profiled out (s3r.solver.support's numerical-zero check)."""
    col = slice(b, b + 1)
    sub = GLMDatafit(datafit.X, datafit.y[:, col], datafit.o[:, col], None if datafit.off is None else datafit.off[:, col],
                     datafit.Z, datafit.family)
    if sub.Z is None:
        eta = sub.eta(W_b, None)
    else:
        _, eta, _ = _profile_gamma(sub, W_b, gamma[col])
    return sub.grad_eta(eta) * free_b
