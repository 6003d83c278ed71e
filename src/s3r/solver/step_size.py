"""The PDHG's magnitude-matched primal step: where each solve's step starts and what the balancing's floor is measured
against (:mod:`s3r.solver.primal_dual`)."""

from __future__ import annotations

import torch


def reference_step(datafit, smooth, K) -> torch.Tensor:
    """(B,) the magnitude-matched primal step of the problem (:func:`initial_step`) — of the full problem when a
    working set solves restricted copies, whose fewer columns give smaller row norms and a larger step."""
    R = float(K.norm_bound()) if K is not None and smooth is not None else 0.0
    lam = smooth.lam.view(-1) if R > 0 else torch.zeros(datafit.y.shape[1], dtype=datafit.X.dtype, device=datafit.X.device)
    x2 = datafit.row_norms2()
    x2 = torch.clamp(x2, min=max(float(x2.mean()) * 1e-8, float(torch.finfo(x2.dtype).tiny)))
    return initial_step(datafit, lam, R, x2)


def initial_step(datafit, lam, R, x2):
    """A primal step matched to the magnitudes: |W| ~ |y|/‖x‖ against duals |v| ~ |y|/n and |U| ~ λ."""
    o = datafit.o
    y_scale = torch.sqrt((o * datafit.y_link**2).sum(0) / torch.clamp(o.sum(0), min=1)).clamp_min(1e-12)
    x_norm = torch.sqrt(x2.mean())
    w_scale = y_scale / x_norm
    v_scale = 2 * y_scale * datafit.curvature_scale() / datafit.n  # v = ∇φ(ŷ): the residual times the curvature
    tau_data = w_scale / (v_scale * x_norm)
    if R > 0:
        tau_smooth = w_scale / (torch.clamp(lam, min=1e-12) * R**0.5)
        return torch.where(lam > 0, torch.sqrt(tau_data * tau_smooth), tau_data)
    return tau_data
