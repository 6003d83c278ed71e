"""Goodness of fit for GLMs: deviance, deviance explained (D²) and McFadden's pseudo-R².

The null model is the intercept-only fit *with the same offset*, so a library-size offset alone does not
count as explained deviance.
"""

from __future__ import annotations

import numpy as np
import torch

from s3r.glm.families import get_family


def _t(a, dtype=torch.float64):
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype)


def _cols(a, n):
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(n, -1)


def null_eta(family, Y: torch.Tensor, w: torch.Tensor, offset: torch.Tensor | None, n_iter: int = 50) -> torch.Tensor:
    """Linear predictor of the intercept-only fit per column (Newton on the scalar intercept)."""
    ybar = (w.unsqueeze(1) * Y).sum(0) / w.sum()
    if family.name == "gaussian":
        b = ybar if offset is None else ((w.unsqueeze(1) * (Y - offset)).sum(0) / w.sum())
        return b.unsqueeze(0) + (0 if offset is None else offset)
    b = torch.log(torch.clamp(ybar, min=1e-12))
    off = torch.zeros_like(Y[:1]) if offset is None else offset
    if offset is None:
        return b.unsqueeze(0) + off
    if family.name == "poisson":  # closed form: Σ w y = e^b Σ w e^o
        b = torch.log(torch.clamp((w.unsqueeze(1) * Y).sum(0), min=1e-300)) - torch.log((w.unsqueeze(1) * torch.exp(off)).sum(0))
        return b.unsqueeze(0) + off
    b = b - (w.unsqueeze(1) * off).sum(0) / w.sum()
    for _ in range(n_iter):
        eta = b.unsqueeze(0) + off
        g = (w.unsqueeze(1) * family.gradient(Y, eta)).sum(0)
        h = (w.unsqueeze(1) * family.weight(Y, eta)).sum(0)
        step = g / torch.clamp(h, min=1e-300)
        b = b - step
        if bool((step.abs() < 1e-12).all()):
            break
    return b.unsqueeze(0) + off


def deviance(y, mu, family="gaussian", *, sample_weight=None, theta=None) -> np.ndarray:
    """Weighted mean unit deviance per response column."""
    fam = get_family(family, theta)
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    Y, M = _t(_cols(y, n)), _t(_cols(mu, n))
    w = _t(np.ones(n) if sample_weight is None else sample_weight)
    if fam.name == "negative_binomial" and theta is not None:
        fam.set_theta(_t(np.broadcast_to(np.asarray(theta, dtype=np.float64), (Y.shape[1],)).copy()))
    d = (w.unsqueeze(1) * fam.deviance(Y, M)).sum(0) / w.sum()
    return d.numpy() if y.ndim > 1 else float(d[0])


def glm_scores(family, Y: torch.Tensor, eta: torch.Tensor, w: torch.Tensor, offset: torch.Tensor | None, **loglik_kw) -> dict:
    """deviance (weighted mean), null deviance, D² = 1 − D/D₀ and McFadden pseudo-R² = 1 − ℓ/ℓ₀, per column."""
    mu = family.mean(eta)
    e0 = null_eta(family, Y, w, offset)
    mu0 = family.mean(e0)
    ws = w.unsqueeze(1) / w.sum()
    dev = (ws * family.deviance(Y, mu)).sum(0)
    dev0 = (ws * family.deviance(Y, mu0)).sum(0)
    if family.name == "gaussian":
        s2 = torch.clamp(dev, min=1e-300).unsqueeze(0)
        ll = (ws * family.loglik(Y, mu, scale=s2)).sum(0)
        ll0 = (ws * family.loglik(Y, mu0, scale=torch.clamp(dev0, min=1e-300).unsqueeze(0))).sum(0)
    else:
        ll = (ws * family.loglik(Y, mu, **loglik_kw)).sum(0)
        ll0 = (ws * family.loglik(Y, mu0, **loglik_kw)).sum(0)
    d2 = 1 - dev / torch.clamp(dev0, min=1e-300)
    pr2 = 1 - ll / torch.where(ll0 == 0, torch.full_like(ll0, -1e-300), ll0)
    return {"deviance": dev, "null_deviance": dev0, "deviance_explained": d2, "pseudo_r2": pr2}
