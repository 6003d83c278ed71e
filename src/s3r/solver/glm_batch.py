"""S3R with a log-link count data fit (poisson, negative binomial, gamma), batched: the problem's assembly for the
primal–dual solver, whose data fit is then :class:`s3r.solver.glm_loss.GLMLoss`.

    min_{W, γ}  f(W, γ) + h(W) + g(K W),     f = (1/n) Σ_i o_i d(y_i, μ_i),  log μ_i = ⟨x_i, W_i⟩ + ⟨z_i, γ⟩ + offset_i

f is the mean deviance (the gaussian S3R fit (1/n) Σ o_i (y_i − ŷ_i)² is the gaussian deviance, so λ, α, β mean
the same across families); h (sparse group lasso) and g (graph ℓ1 or quadratic) are the squared loss's penalty
objects, so every smoothness mode works with every family, and the unpenalised covariates are eliminated exactly.

Until session 32 these problems were solved by Condat–Vũ splitting with f entering by its gradient; its primal step
was capped by f's curvature, and on a real section (DLPFC MBP, negative binomial, tuned penalties) it had not converged
after 20,000 iterations where the primal–dual solver with f's conjugate converges in 2,890 (benchmarks/README.md).
:class:`GLMDatafit` and :func:`_profile_gamma` remain for the numerical-zero check, which needs f's gradient at W with
the covariates at their optimum.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch

from s3r.solver.device import cpu_threads, resolve_device, resolve_dtype
from s3r.solver.glm_loss import GLMLoss
from s3r.solver.penalties import GraphL1, GraphQuadratic, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual
from s3r.solver.result import SolveResult
from s3r.solver.support import prune_numerical_zeros


class GLMDatafit:
    """f(W, γ) = Σ_i c_i d(y_i, μ_i) with c_i = o_i / n, evaluated directly (the numerical-zero check's gradient);
    W (n, B, p), γ (B, q), everything else (n, B)."""

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


def _profile_gamma(datafit: GLMDatafit, W, gamma, max_newton: int = 50):
    """γ*(W) = argmin_γ f(W, γ) by damped Newton (q is small), warm-started from ``gamma``: the covariates at their
    optimum given W, where the numerical-zero check takes f's gradient. Its line search compares the data fit without
    its terms in y alone (``Family.nll``), and each problem stops where its precision ends (in float32 a rule finer
    than that ran all 50 steps with 30 halvings each: 95 % of a count-family tuning fold before session 32).
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
        loss = GLMLoss(datafit.X, datafit.y, datafit.o, datafit.Z, fam, datafit.off)
        result = primal_dual(loss, penalty, smooth_term, operator, Wt, gt, tol=tol, max_iter=max_iter, callback=callback)
        result.method = f"pdhg-{fam.name}"
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
