"""X-step: mixtures for a fixed dictionary, graph TV handled exactly by Condat–Vũ primal–dual splitting.

    min_X  −Σ_i log⟨M_i, X_i⟩ + Σ_e c_e Σ_d |X_di − X_dj|   s.t. each spot's mixture on the floor simplex

with M = (S B)ᵀ (each spot's likelihood under each component) and c_e = λ w_e. Smoothing |u| by √(u² + δ),
as the earlier implementation did, forces steps of order √δ/λ; splitting keeps |u| exact, and each step
costs two sparse products, one projection and element-wise work. Tensors are component-major (D × spots).

The log term is only locally Lipschitz (its curvature ‖M_i‖²/z_i² blows up as z_i → 0), so each spot gets its
own Lipschitz estimate L_i, raised by backtracking on the descent inequality between consecutive iterates.
The diagonal step τ_i = 1/(2σ·deg_i + 0.55·L_i) satisfies the Condat–Vũ condition T⁻¹ − σAᵀA ≻ ½·diag(L)
strictly, because AᵀA (the graph Laplacian) ⪯ 2·diag(deg). Estimates are lowered, and σ rebalanced against
the residuals, only at restarts spaced geometrically (50, 100, 200, … iterations), so each stretch between
restarts is a plain Condat–Vũ run with fixed or shrinking steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from s3r.deconv.apg import accelerated_projected_gradient
from s3r.deconv.operators import Incidence
from s3r.deconv.simplex import project_floor_simplex

# ½ from the Condat–Vũ condition, times 1.1 so that it holds strictly (needed with unit relaxation)
_CURVATURE_MARGIN = 0.55
_MAX_BACKTRACKS = 60
# iterations at which the per-spot curvature is re-estimated (then doubling): a start in a high-curvature
# region must not pin the steps small for the whole solve, while between re-estimates the estimates only
# grow, as the Condat–Vũ analysis needs (each stretch is a restart from the current primal–dual pair)
_FIRST_REESTIMATE = 50
# at those restarts σ is rebalanced when the primal and dual residuals differ by more than this factor
# (residual balancing, Goldstein et al. 2015): up to 3× fewer iterations than the first guess on DLPFC data
_BALANCE = 2.0
# absolute slack in the descent test, for rounding: per-spot losses −log z are O(1)
_SLACK = 1e-10


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


def _rms(tensor: torch.Tensor) -> float:
    return math.sqrt(float((tensor * tensor).mean())) if tensor.numel() else 0.0


def default_dual_step(edge_costs: torch.Tensor) -> float:
    """A first σ (the solver rebalances it): the dual box [−c_e, c_e] crossable in a few typical jumps."""
    positive = edge_costs[edge_costs > 0]
    if positive.numel() == 0:
        return 0.0
    return float(positive.median())


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
    ``balance`` lets restarts rebalance σ (for cold starts; a warm dual wants its σ kept). The loop works in
    preallocated buffers: fresh temporaries of this size cost more than the arithmetic.
    """
    M = component_scores
    D, n = M.shape
    caps = edge_costs.unsqueeze(0)
    negative_caps = -caps
    X = project_floor_simplex(mixture, eps, dim=0)
    if dual is None:
        Y = torch.zeros((D, incidence.n_edges), dtype=X.dtype, device=X.device)
    else:
        Y = torch.minimum(torch.maximum(dual, negative_caps), caps)
    if sigma is None:
        sigma = default_dual_step(edge_costs)

    z = (M * X).sum(dim=0)
    loss = -torch.log(z)
    grad = -(M / z)
    squared_scores = (M * M).sum(dim=0)
    lipschitz = squared_scores / (z * z)  # the Hessian's norm at the warm start; backtracking raises it
    degree_term = (2.0 * sigma) * incidence.degrees
    tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
    AX = incidence.apply(X)
    AtY = incidence.adjoint(Y)

    negative_M = -M
    direction, trial, step, work = (torch.empty_like(X) for _ in range(4))
    X_new, grad_new = torch.empty_like(X), torch.empty_like(X)
    Y_new = torch.empty_like(Y)

    iterations, backtracks, converged = 0, 0, False
    primal_res = dual_res = float("inf")
    best, best_value = None, float(loss.sum() + (caps * AX.abs()).sum())  # to beat: the start
    next_reestimate = _FIRST_REESTIMATE
    while iterations < max_iter:
        iterations += 1
        if iterations == next_reestimate:  # restart the estimates from the current curvature
            z = torch.mul(M, X, out=work).sum(dim=0)
            lipschitz = squared_scores / (z * z)
            if balance and sigma > 0 and math.isfinite(primal_res) and dual_res > 0 and primal_res > 0:
                ratio = primal_res / dual_res
                if ratio > _BALANCE or ratio < 1 / _BALANCE:  # a large primal residual asks for a larger τ
                    sigma *= min(4.0, max(0.25, ratio**-0.5))
                    degree_term = (2.0 * sigma) * incidence.degrees
            tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
            next_reestimate *= 2
        torch.add(grad, AtY, out=direction)
        for _ in range(_MAX_BACKTRACKS):
            torch.addcmul(X, direction, tau, value=-1.0, out=trial)
            project_floor_simplex(trial, eps, dim=0, out=X_new)
            z_new = torch.mul(M, X_new, out=work).sum(dim=0)
            torch.sub(X_new, X, out=step)
            linear = torch.mul(grad, step, out=work).sum(dim=0)
            squared = torch.mul(step, step, out=work).sum(dim=0)
            remainder = torch.log(z_new).neg_().sub_(loss).sub_(linear)  # what the quadratic model must dominate
            violated = remainder > torch.mul(lipschitz, squared).mul_(0.5).add_(_SLACK)
            if not bool(violated.any()):
                break
            backtracks += 1
            needed = torch.nan_to_num(2.0 * remainder / squared.clamp_min(1e-300), nan=0.0, posinf=0.0)
            lipschitz = torch.where(violated, torch.maximum(2.0 * lipschitz, 1.5 * needed), lipschitz)
            tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
        loss_new = remainder.add_(loss).add_(linear)
        AX_new = incidence.apply(X_new)
        torch.add(Y, AX_new, alpha=2.0 * sigma, out=Y_new).add_(AX, alpha=-sigma)
        torch.clamp(Y_new, min=negative_caps, max=caps, out=Y_new)
        AtY_new = incidence.adjoint(Y_new)
        torch.div(negative_M, z_new, out=grad_new)

        if iterations % check_every == 0 or iterations == max_iter:
            value = float(loss_new.sum() + (caps * AX_new.abs()).sum())
            if value < best_value:
                best_value, best = value, X_new.clone()
            primal = (grad_new - grad) - (AtY - AtY_new) - step / tau
            dual_gap = (AX_new - AX) + ((Y - Y_new) / sigma if sigma > 0 else 0.0)
            primal_res, dual_res = _rms(primal), _rms(dual_gap)
            converged = primal_res <= tol and dual_res <= tol
        X, X_new = X_new, X
        Y, Y_new = Y_new, Y
        AX, AtY = AX_new, AtY_new
        grad, grad_new = grad_new, grad
        loss = loss_new
        if converged:
            break
    return XStepResult(X, Y, iterations, converged, primal_res, dual_res, backtracks, sigma, best, best_value)


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
