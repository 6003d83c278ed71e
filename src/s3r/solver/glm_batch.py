"""S3R with a log-link count data fit (poisson, negative binomial, gamma), batched: the problem's assembly for the
primal–dual solver, whose data fit is then :class:`s3r.solver.glm_loss.GLMLoss`.

    min_{W, γ}  f(W, γ) + h(W) + g(K W),     f = (1/n) Σ_i o_i d(y_i, μ_i),  log μ_i = ⟨x_i, W_i⟩ + ⟨z_i, γ⟩ + offset_i

f is the mean deviance (the gaussian S3R fit (1/n) Σ o_i (y_i − ŷ_i)² is the gaussian deviance, so λ, α, β mean
the same across families); h (sparse group lasso) and g (graph ℓ1 or quadratic) are the squared loss's penalty
objects, so every smoothness mode works with every family, and the unpenalised covariates are eliminated exactly.

Until session 32 these problems were solved by Condat–Vũ splitting with f entering by its gradient; its primal step
was capped by f's curvature, and on a real section (DLPFC MBP, negative binomial, tuned penalties) it had not converged
after 20,000 iterations where the primal–dual solver with f's conjugate converges in 2,890 (benchmarks/README.md).
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
    loss = GLMLoss(t(X), Yt, t(nb(weights, 1.0)), Zt, fam, None if offset is None else t(nb(offset, 0.0)))
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
        if gt is not None:
            loss.start_covariates(gt)
        result = primal_dual(loss, penalty, smooth_term, operator, Wt, gt, tol=tol, max_iter=max_iter, callback=callback)
        result.method = f"pdhg-{fam.name}"
        result.W, result.zeroed = prune_numerical_zeros(loss, penalty, smooth_term, operator, result.W,
                                                        gradient=partial(_glm_gradient, gamma=result.gamma))
    return result


def _glm_gradient(loss: GLMLoss, b: int, W_b, free_b, *, gamma):
    """Problem b's ∂φ/∂ŷ at W_b with the covariates profiled out (s3r.solver.support's numerical-zero check)."""
    sub = loss.select(torch.tensor([b], device=W_b.device))
    pred = sub.predict_w(W_b) if sub.Z is None else sub.profile_covariates(W_b, gamma[b:b + 1])[1]
    return sub.gradient(pred) * free_b
