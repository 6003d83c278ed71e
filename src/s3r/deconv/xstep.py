"""X-step: mixtures for a fixed dictionary, graph TV handled exactly by Condat–Vũ primal–dual splitting.

    min_X  −Σ_i log⟨M_i, X_i⟩ + Σ_e c_e Σ_d |X_di − X_dj|   s.t. each spot's mixture on the floor simplex

with M = (S B)ᵀ (each spot's likelihood under each component) and c_e = λ w_e. Smoothing |u| by √(u² + δ),
as the earlier implementation did, forces steps of order √δ/λ; splitting keeps |u| exact. The iterations are
s3r.deconv.condat_vu's (shared with the proportions mode); this module supplies the log-evidence term, whose
curvature ‖M_i‖²/z_i² blows up as z_i → 0, so per-spot Lipschitz estimates with backtracking matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from s3r.deconv.apg import accelerated_projected_gradient
from s3r.deconv.condat_vu import condat_vu
from s3r.deconv.operators import Incidence
from s3r.deconv.simplex import project_floor_simplex


@dataclass
class XStepResult:
    mixture: torch.Tensor  # (D, n)
    dual: torch.Tensor | None  # (D, m), the warm start for the next X-step
    iterations: int
    converged: bool
    primal_residual: float
    dual_residual: float
    backtracks: int
    sigma: float = 0.0  # the dual step at the end (after any rebalancing)
    # primal–dual iterates do not descend monotonically: the lowest-objective iterate checked, if any beat
    # the start, and its value
    best_mixture: torch.Tensor | None = None
    best_objective: float = float("inf")


def negative_log_evidence(component_scores: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """−Σ_i log z_i with z_i = Σ_d M_di X_di (+inf where a spot's evidence vanishes)."""
    return -torch.log((component_scores * mixture).sum(dim=0)).sum()


def edge_jumps(incidence: Incidence, mixture: torch.Tensor, delta: float = 0.0) -> torch.Tensor:
    """Per edge Σ_d |(A X)_de|, or its soft-L1 √(u² + δ) version when delta > 0: the w-step's costs."""
    jumps = incidence.apply(mixture)
    return (jumps.abs() if delta == 0 else torch.sqrt(jumps * jumps + delta)).sum(dim=0)


def tv_penalty(incidence: Incidence, mixture: torch.Tensor, edge_costs: torch.Tensor, delta: float = 0.0):
    """Σ_e c_e Σ_d |(A X)_de| (soft-L1 when delta > 0)."""
    return (edge_costs * edge_jumps(incidence, mixture, delta)).sum()


class LogEvidence:
    """f_i(X_i) = −log z_i, z_i = ⟨M_i, X_i⟩: the X-step's term in the form s3r.deconv.condat_vu takes."""

    def __init__(self, component_scores: torch.Tensor):
        self.M = component_scores
        self.squared_scores = (component_scores * component_scores).sum(dim=0)

    def composition(self, X: torch.Tensor) -> torch.Tensor:
        return (self.M * X).sum(dim=0)

    def loss(self, X: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return -torch.log(self.composition(X) if z is None else z)

    def gradient(self, X: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return -(self.M / (self.composition(X) if z is None else z))

    def curvature(self, X: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        z = self.composition(X) if z is None else z
        return self.squared_scores / (z * z)  # the Hessian's norm; backtracking raises it where needed


def solve_x_step(
    component_scores: torch.Tensor,
    mixture: torch.Tensor,
    incidence: Incidence,
    edge_costs: torch.Tensor,
    eps: float,
    *,
    dual: torch.Tensor | None = None,
    sigma: float | None = None,
    balance: bool = True,
    tol: float = 1e-5,
    max_iter: int = 5000,
    check_every: int = 10,
) -> XStepResult:
    """Condat–Vũ iterations from a warm start until both residuals fall below ``tol``.

    Residuals are what Condat–Vũ leaves of the optimality conditions after a step, in natural units: the
    primal one is a gradient (⟨∇_i f, X_i⟩ = −1 at every X, so gradients are O(1)), the dual one a jump in X.
    ``balance`` lets restarts rebalance σ (for cold starts; a warm dual wants its σ kept).
    """
    r = condat_vu(LogEvidence(component_scores), mixture, incidence, edge_costs, floor=eps, dual=dual, sigma=sigma,
                  balance=balance, certify_gap=False, track_best=True, tol=tol, max_iter=max_iter,
                  check_every=check_every)
    return XStepResult(r.point, r.dual, r.iterations, r.converged, r.primal_residual, r.dual_residual, r.backtracks,
                       r.sigma, r.best_point, r.best_objective)


def solve_x_step_soft(
    component_scores: torch.Tensor,
    mixture: torch.Tensor,
    incidence: Incidence,
    edge_costs: torch.Tensor,
    eps: float,
    *,
    delta: float = 1e-6,
    tol: float = 1e-5,
    max_iter: int = 5000,
) -> XStepResult:
    """The soft-L1 variant Σ c_e Σ_d √(u² + δ): smooth, so accelerated projected gradient with backtracking.

    Kept for comparison with the earlier implementation; its curvature grows like c_e/√δ, which the
    backtracking finds instead of guessing.
    """
    M = component_scores
    caps = edge_costs.unsqueeze(0)

    def objective(X: torch.Tensor):
        z = (M * X).sum(dim=0)
        jumps = incidence.apply(X)
        smooth_abs = torch.sqrt(jumps * jumps + delta)
        value = -torch.log(z).sum() + (caps * smooth_abs).sum()
        return value, lambda: -(M / z) + incidence.adjoint(caps * jumps / smooth_abs)

    result = accelerated_projected_gradient(
        objective,
        lambda V: project_floor_simplex(V, eps, dim=0),
        project_floor_simplex(mixture, eps, dim=0),
        tol=tol,
        max_iter=max_iter,
    )
    improved = result.point if result.iterations > 0 else None
    return XStepResult(
        result.point, None, result.iterations, result.converged, result.residual, 0.0, result.backtracks,
        best_mixture=improved, best_objective=result.value,
    )
