"""Accelerated projected gradient (FISTA) with backtracking and adaptive restart, for smooth objectives.

Used where the objective is smooth on the feasible set: the B-step, and the soft-L1 X-step. The Lipschitz
estimate only grows within a solve (so the step stays valid), momentum restarts whenever the objective goes
up (O'Donoghue & Candès 2015), and the stop is on the gradient mapping, a certificate of stationarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

# objective(x) -> (value, gradient thunk): the gradient is only formed for accepted points
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, Callable[[], torch.Tensor]]]


@dataclass
class APGResult:
    point: torch.Tensor
    value: float
    iterations: int
    converged: bool
    residual: float
    lipschitz: float
    backtracks: int


def accelerated_projected_gradient(
    objective: Objective,
    project: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    *,
    lipschitz: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> APGResult:
    """Minimise ``objective`` over the set ``project`` maps onto.

    The residual is the RMS of the gradient mapping (x − project(x − ∇/L))·L, zero exactly at a stationary
    point of the constrained problem.
    """
    x = project(start)
    x_value, x_gradient = objective(x)
    if not torch.isfinite(x_value):
        raise FloatingPointError("objective is not finite at the starting point")
    x_grad = x_gradient()
    if lipschitz is None:
        lipschitz = _initial_lipschitz(objective, project, x, x_grad)
    y, y_value, y_grad = x, x_value, x_grad
    momentum = 1.0
    backtracks, converged, residual = 0, False, float("inf")
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        while True:
            candidate = project(y - y_grad / lipschitz)
            step = candidate - y
            candidate_value, candidate_gradient = objective(candidate)
            bound = y_value + (y_grad * step).sum() + 0.5 * lipschitz * (step * step).sum()
            if bool(torch.isfinite(candidate_value)) and candidate_value <= bound + 1e-12 * abs(float(y_value)):
                break
            lipschitz *= 2.0
            backtracks += 1
            if lipschitz > 1e300:
                raise FloatingPointError("backtracking could not find a step; the objective is not smooth here")
        residual = math.sqrt(float((step * step).mean())) * lipschitz
        if candidate_value > x_value:  # restart: drop momentum, continue from the last accepted point
            momentum = 1.0
            x_grad = x_gradient() if x_grad is None else x_grad
            y, y_value, y_grad = x, x_value, x_grad
            continue
        next_momentum = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * momentum * momentum))
        beta = (momentum - 1.0) / next_momentum
        momentum = next_momentum
        previous = x
        x, x_value, x_gradient, x_grad = candidate, candidate_value, candidate_gradient, None
        if residual <= tol:
            converged = True
            break
        if beta == 0.0:
            x_grad = x_gradient()
            y, y_value, y_grad = x, x_value, x_grad
            continue
        y = candidate + beta * (candidate - previous)
        y_value, y_gradient = objective(y)
        if bool(torch.isfinite(y_value)):
            y_grad = y_gradient()
        else:  # extrapolation left the domain: restart from x
            momentum = 1.0
            x_grad = x_gradient()
            y, y_value, y_grad = x, x_value, x_grad
    return APGResult(x, float(x_value), iterations, converged, residual, lipschitz, backtracks)


def _initial_lipschitz(objective: Objective, project, x: torch.Tensor, grad: torch.Tensor) -> float:
    """A local secant estimate from a tiny gradient step; backtracking corrects it upward if needed."""
    norm = float(grad.norm())
    if norm == 0.0:
        return 1.0
    probe = project(x - grad * (1e-3 / norm))
    if torch.equal(probe, x):
        return 1.0
    probe_value, probe_gradient = objective(probe)
    if not bool(torch.isfinite(probe_value)):
        return 1.0
    probe_grad = probe_gradient()
    estimate = float((probe_grad - grad).norm() / (probe - x).norm())
    return max(estimate, 1e-8)
