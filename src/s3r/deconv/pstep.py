"""Transcript fractions for fixed edge weights: count likelihood + exact graph TV by Condat–Vũ splitting.

    min_V  Σ_i f_i(V_i) + Σ_e c_e Σ_k |V_ki − V_kj|    s.t. every spot's V_i on the simplex

f_i is the spot's count −log-likelihood (s3r.deconv.counts.CountTerm), c_e = λ·w_e. Same scheme as the
components mode's X-step: per-spot Lipschitz estimates raised by backtracking on the descent inequality, the
diagonal step τ_i = 1/(2σ·deg_i + 0.55·L_i) (AᵀA ⪯ 2·diag(deg)), re-estimates and σ balancing only at restarts
spaced geometrically. The projection onto the simplex is exact, and so is the prox of the dual (a clip).

The stop is a certificate, not a budget: the primal and dual residuals of the Condat–Vũ fixed point (a
gradient and a jump, both O(1) because f is divided by the median library size) and the TV complementarity
gap Σ_e c_e‖(AV)_e‖₁ − ⟨Y, AV⟩ (≥ 0 for a feasible dual, 0 at a saddle point), relative to the objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from s3r.deconv.counts import CountTerm
from s3r.deconv.operators import Incidence
from s3r.deconv.simplex import project_floor_simplex

_CURVATURE_MARGIN = 0.55
_MAX_BACKTRACKS = 60
_FIRST_REESTIMATE = 50
_BALANCE = 2.0
_SLACK = 1e-10


@dataclass
class PStepResult:
    fractions: torch.Tensor  # (K, n)
    dual: torch.Tensor  # (K, m)
    iterations: int
    converged: bool
    primal_residual: float
    dual_residual: float
    gap: float  # relative TV complementarity gap
    objective: float
    backtracks: int
    sigma: float

    def certificate(self) -> dict:
        return {
            "iterations": self.iterations,
            "converged": self.converged,
            "primal_residual": self.primal_residual,
            "dual_residual": self.dual_residual,
            "relative_gap": self.gap,
            "objective": self.objective,
        }


def _rms(tensor: torch.Tensor) -> float:
    return math.sqrt(float((tensor * tensor).mean())) if tensor.numel() else 0.0


def objective(term: CountTerm, V: torch.Tensor, incidence: Incidence, edge_costs: torch.Tensor) -> float:
    value = float(term.loss(V).sum())
    if incidence.n_edges and float(edge_costs.max()) > 0:
        value += float((edge_costs * incidence.apply(V).abs().sum(dim=0)).sum())
    return value


def solve_proportions(
    term: CountTerm,
    start: torch.Tensor,
    incidence: Incidence,
    edge_costs: torch.Tensor,
    *,
    dual: torch.Tensor | None = None,
    sigma: float | None = None,
    tol: float = 1e-4,
    max_iter: int = 2000,
    check_every: int = 10,
) -> PStepResult:
    """Condat–Vũ from a warm start (V, dual) until both residuals and the relative gap fall below ``tol``."""
    caps = edge_costs.unsqueeze(0)
    negative_caps = -caps
    smooth = incidence.n_edges > 0 and float(edge_costs.max()) > 0
    V = project_floor_simplex(start, 0.0, dim=0)
    K, n = V.shape
    if dual is None or not smooth:
        Y = V.new_zeros((K, incidence.n_edges))
    else:
        Y = torch.minimum(torch.maximum(dual, negative_caps), caps)
    if sigma is None:
        positive = edge_costs[edge_costs > 0]
        sigma = float(positive.median()) if positive.numel() else 0.0
    if not smooth:
        sigma = 0.0

    Z = term.composition(V)
    loss = term.loss(V, Z)
    grad = term.gradient(V, Z)
    lipschitz = term.curvature(V, Z)
    degree_term = (2.0 * sigma) * incidence.degrees
    tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
    AV = incidence.apply(V)
    AtY = incidence.adjoint(Y)

    iterations, backtracks, converged = 0, 0, False
    primal_res = dual_res = gap = float("inf")
    next_reestimate = _FIRST_REESTIMATE
    while iterations < max_iter:
        iterations += 1
        if iterations == next_reestimate:
            lipschitz = term.curvature(V)
            if smooth and math.isfinite(primal_res) and dual_res > 0 and primal_res > 0:
                ratio = primal_res / dual_res
                if ratio > _BALANCE or ratio < 1 / _BALANCE:
                    sigma *= min(4.0, max(0.25, ratio**-0.5))
                    degree_term = (2.0 * sigma) * incidence.degrees
            tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
            next_reestimate *= 2
        direction = grad + AtY
        for _ in range(_MAX_BACKTRACKS):
            V_new = project_floor_simplex(V - tau * direction, 0.0, dim=0)
            Z_new = term.composition(V_new)
            loss_new = term.loss(V_new, Z_new)
            step = V_new - V
            linear = (grad * step).sum(dim=0)
            squared = (step * step).sum(dim=0)
            remainder = loss_new - loss - linear
            violated = remainder > 0.5 * lipschitz * squared + _SLACK * (1.0 + loss.abs())
            if not bool(violated.any()):
                break
            backtracks += 1
            needed = torch.nan_to_num(2.0 * remainder / squared.clamp_min(1e-300), nan=0.0, posinf=0.0)
            lipschitz = torch.where(violated, torch.maximum(2.0 * lipschitz, 1.5 * needed), lipschitz)
            tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
        grad_new = term.gradient(V_new, Z_new)
        AV_new = incidence.apply(V_new)
        if smooth:
            Y_new = torch.clamp(Y + sigma * (2.0 * AV_new - AV), min=negative_caps, max=caps)
            AtY_new = incidence.adjoint(Y_new)
        else:
            Y_new, AtY_new = Y, AtY
        if iterations % check_every == 0 or iterations == max_iter:
            primal = (grad_new - grad) - (AtY - AtY_new) - step / tau
            dual_gap = (AV_new - AV) + ((Y - Y_new) / sigma if sigma > 0 else 0.0)
            primal_res, dual_res = _rms(primal), _rms(dual_gap)
            value = float(loss_new.sum())
            tv = float((caps * AV_new.abs()).sum()) if smooth else 0.0
            pairing = float((Y_new * AV_new).sum()) if smooth else 0.0
            gap = max(tv - pairing, 0.0) / max(1.0, value + tv)
            converged = primal_res <= tol and dual_res <= tol and gap <= tol
        V, Y, AV, AtY, grad, loss = V_new, Y_new, AV_new, AtY_new, grad_new, loss_new
        if converged:
            break
    value = objective(term, V, incidence, edge_costs)
    return PStepResult(V, Y, iterations, converged, primal_res, dual_res, gap, value, backtracks, sigma)
