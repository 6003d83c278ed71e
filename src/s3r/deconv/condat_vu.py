"""Condat–Vũ splitting for a smooth per-spot loss + exact graph TV over rows on the (floor) simplex.

    min_U  Σ_i f_i(U_i) + Σ_e c_e Σ_k |U_ki − U_kj|    s.t. every spot's U_i on {u ≥ ε, Σu = 1}

One solver for both deconvolution modes: the components mode's X-step (f_i = −log⟨M_i, X_i⟩) and the
proportions mode's V-step (f_i a count −log-likelihood). A term supplies ``composition(U)`` (what the loss
and gradient share), ``loss`` (per spot), ``gradient`` and ``curvature`` (a per-spot estimate of the Hessian's
norm). The losses are only locally Lipschitz, so each spot keeps its own estimate L_i, raised by backtracking
on the descent inequality; the diagonal step τ_i = 1/(2σ·deg_i + 0.55·L_i) satisfies the Condat–Vũ condition
T⁻¹ − σAᵀA ≻ ½·diag(L) strictly, because AᵀA (the graph Laplacian) ⪯ 2·diag(deg). Estimates are lowered,
and σ rebalanced against the residuals, only at restarts spaced geometrically (50, 100, 200, … iterations),
so each stretch between restarts is a plain Condat–Vũ run with fixed or shrinking steps. The projection
onto the simplex is exact, and so is the prox of the dual (a clip).

The first σ matters more than anything else measured (benchmarks/README.md, session 8): with
``dual_start="jumps"`` it is the σ that carries a dual entry across its box [−c_e, c_e] in one step of the
start's typical jump, σ = median(c)/median_e(‖(AU)_e‖₁/K), instead of the box's width alone (σ = median(c),
``"cost"``), and ``balance_gap`` weighs the primal residual against the larger of the dual residual and the
gap (the stop's binding term on count losses) when σ is rebalanced. On the proportions mode's V-steps
they cut the iterations to the same certificate 3–4×; the components mode keeps the former rule.

The stop is a certificate, not a budget: the primal and dual residuals of the fixed point (a gradient and a
jump, both O(1) for the losses used here) and, when asked, the TV complementarity gap
Σ_e c_e‖(AU)_e‖₁ − ⟨Y, AU⟩ (≥ 0 for a feasible dual, 0 at a saddle point), relative to the objective.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from s3r.deconv.operators import Incidence
from s3r.deconv.simplex import project_floor_simplex

# ½ from the Condat–Vũ condition, times 1.1 so that it holds strictly (needed with unit relaxation)
_CURVATURE_MARGIN = 0.55
_MAX_BACKTRACKS = 60
# first restart (then doubling): a start in a high-curvature region must not pin the steps small for the
# whole solve, while between restarts the estimates only grow, as the Condat–Vũ analysis needs
_FIRST_REESTIMATE = 50
# residual balancing (Goldstein et al. 2015): σ moves when the residuals differ by more than this factor
_BALANCE = 2.0
# slack in the descent test, for rounding, relative to 1 + |f_i| (float64), and at least a few units of the
# dtype's rounding of the sums that make f_i: in float32 a count loss is a difference of terms ~10⁴ times
# larger than its changes near the optimum, and a slack below that rounding reads noise as a violated
# descent test, so the curvature estimates double until the steps vanish (fits then stall at max_iter)
_SLACK = 1e-10
_ROUNDING_UNITS = 64.0


def _slack(term, loss: torch.Tensor) -> torch.Tensor:
    rounding = _ROUNDING_UNITS * torch.finfo(loss.dtype).eps
    magnitude = getattr(term, "loss_magnitude", None)
    base = 1.0 + loss.abs()
    return torch.maximum(_SLACK * base, rounding * (base if magnitude is None else base + magnitude))


@dataclass
class CondatVuResult:
    point: torch.Tensor  # (K, n)
    dual: torch.Tensor  # (K, m), the warm start of the next solve
    iterations: int
    converged: bool
    primal_residual: float
    dual_residual: float
    gap: float  # relative TV complementarity gap (inf when not certified)
    objective: float
    backtracks: int
    sigma: float  # the dual step at the end (after any rebalancing)
    # primal–dual iterates do not descend monotonically: the lowest-objective iterate checked, if any beat
    # the start, and its value (only with track_best)
    best_point: torch.Tensor | None = None
    best_objective: float = float("inf")


def _rms(tensor: torch.Tensor) -> float:
    return math.sqrt(float((tensor * tensor).mean())) if tensor.numel() else 0.0


def default_dual_step(edge_costs: torch.Tensor) -> float:
    """A first σ (the solver rebalances it): the dual box [−c_e, c_e] crossable in a few typical jumps."""
    positive = edge_costs[edge_costs > 0]
    return float(positive.median()) if positive.numel() else 0.0


def jump_dual_step(edge_costs: torch.Tensor, jumps: torch.Tensor) -> float:
    """σ = median(c)/(typical jump per component) for a start with jumps ``AU`` (K, m); the box's width alone
    (``default_dual_step``) when the start has none (every spot alike, a uniform start)."""
    per_edge = jumps.abs().sum(dim=0) / max(jumps.shape[0], 1)
    moving = per_edge[per_edge > 0]
    typical = float(moving.median()) if moving.numel() else 0.0
    base = default_dual_step(edge_costs)
    return base / typical if typical > 0 and math.isfinite(base / typical) else base


def tv_objective(term, point: torch.Tensor, incidence: Incidence, edge_costs: torch.Tensor) -> float:
    """Σ_i f_i + Σ_e c_e ‖(AU)_e‖₁."""
    value = float(term.loss(point).sum())
    if incidence.n_edges and float(edge_costs.max()) > 0:
        value += float((edge_costs * incidence.apply(point).abs().sum(dim=0)).sum())
    return value


def condat_vu(
    term,
    start: torch.Tensor,
    incidence: Incidence,
    edge_costs: torch.Tensor,
    *,
    floor: float = 0.0,
    dual: torch.Tensor | None = None,
    sigma: float | None = None,
    balance: bool = True,
    dual_start: str = "cost",
    balance_gap: bool = False,
    first_reestimate: int = _FIRST_REESTIMATE,
    certify_gap: bool = True,
    track_best: bool = False,
    tol: float = 1e-4,
    max_iter: int = 2000,
    check_every: int = 10,
) -> CondatVuResult:
    """Iterate from a warm start (U, dual) until both residuals (and the gap, with certify_gap) are ≤ ``tol``.

    ``balance`` lets restarts rebalance σ (for cold starts; a warm dual may want its σ kept), against the
    dual residual or, with ``balance_gap``, the larger of it and the gap. Without a given ``sigma``,
    ``dual_start`` picks the first: "cost" (the median edge cost) or "jumps" (see the module notes).
    ``first_reestimate``: the iteration of the first restart (then doubling).
    """
    caps = edge_costs.unsqueeze(0)
    negative_caps = -caps
    smooth = incidence.n_edges > 0 and float(edge_costs.max()) > 0
    U = project_floor_simplex(start, floor, dim=0)
    K, n = U.shape
    if dual is None or not smooth:
        Y = U.new_zeros((K, incidence.n_edges))
    else:
        Y = torch.minimum(torch.maximum(dual, negative_caps), caps)
    if not smooth:
        return _separable(term, U, incidence, edge_costs, floor=floor, tol=tol, max_iter=max_iter,
                          check_every=check_every)

    Z = term.composition(U)
    loss = term.loss(U, Z)
    grad = term.gradient(U, Z)
    lipschitz = term.curvature(U, Z)
    AU = incidence.apply(U)
    AtY = incidence.adjoint(Y)
    if sigma is None:
        sigma = jump_dual_step(edge_costs, AU) if dual_start == "jumps" else default_dual_step(edge_costs)
    degree_term = (2.0 * sigma) * incidence.degrees
    tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)

    iterations, backtracks, converged = 0, 0, False
    primal_res = dual_res = gap = float("inf")
    best, best_value = None, (float(loss.sum() + (caps * AU.abs()).sum()) if track_best else float("inf"))
    next_reestimate = max(int(first_reestimate), 1)
    while iterations < max_iter:
        iterations += 1
        if iterations == next_reestimate:  # restart the estimates from the current curvature
            lipschitz = term.curvature(U)
            other = max(dual_res, gap) if balance_gap and math.isfinite(gap) else dual_res
            if balance and smooth and math.isfinite(primal_res) and other > 0 and primal_res > 0:
                ratio = primal_res / other
                if ratio > _BALANCE or ratio < 1 / _BALANCE:  # a large primal residual asks for a larger τ
                    sigma *= min(4.0, max(0.25, ratio**-0.5))
                    degree_term = (2.0 * sigma) * incidence.degrees
            tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
            next_reestimate *= 2
        direction = grad + AtY
        for _ in range(_MAX_BACKTRACKS):
            U_new = project_floor_simplex(U - tau * direction, floor, dim=0)
            Z_new = term.composition(U_new)
            loss_new = term.loss(U_new, Z_new)
            step = U_new - U
            linear = (grad * step).sum(dim=0)
            squared = (step * step).sum(dim=0)
            remainder = loss_new - loss - linear  # what the quadratic model must dominate
            violated = remainder > 0.5 * lipschitz * squared + _slack(term, loss)
            if not bool(violated.any()):
                break
            backtracks += 1
            needed = torch.nan_to_num(2.0 * remainder / squared.clamp_min(1e-300), nan=0.0, posinf=0.0)
            lipschitz = torch.where(violated, torch.maximum(2.0 * lipschitz, 1.5 * needed), lipschitz)
            tau = 1.0 / (degree_term + _CURVATURE_MARGIN * lipschitz)
        grad_new = term.gradient(U_new, Z_new)
        AU_new = incidence.apply(U_new)
        if smooth:
            Y_new = torch.clamp(Y + sigma * (2.0 * AU_new - AU), min=negative_caps, max=caps)
            AtY_new = incidence.adjoint(Y_new)
        else:
            Y_new, AtY_new = Y, AtY
        if iterations % check_every == 0 or iterations == max_iter:
            primal = (grad_new - grad) - (AtY - AtY_new) - step / tau
            dual_gap = (AU_new - AU) + ((Y - Y_new) / sigma if sigma > 0 else 0.0)
            primal_res, dual_res = _rms(primal), _rms(dual_gap)
            value = float(loss_new.sum())
            tv = float((caps * AU_new.abs()).sum()) if smooth else 0.0
            if track_best and value + tv < best_value:
                best_value, best = value + tv, U_new.clone()
            if certify_gap:
                pairing = float((Y_new * AU_new).sum()) if smooth else 0.0
                gap = max(tv - pairing, 0.0) / max(1.0, value + tv)
            converged = primal_res <= tol and dual_res <= tol and (gap <= tol or not certify_gap)
        U, Y, AU, AtY, grad, loss = U_new, Y_new, AU_new, AtY_new, grad_new, loss_new
        if converged:
            break
    value = tv_objective(term, U, incidence, edge_costs)
    return CondatVuResult(U, Y, iterations, converged, primal_res, dual_res, gap, value, backtracks, sigma, best, best_value)


def _separable(term, U: torch.Tensor, incidence: Incidence, edge_costs: torch.Tensor, *, floor: float, tol: float,
               max_iter: int, check_every: int) -> CondatVuResult:
    """Without a spatial term every spot is its own small problem: FISTA per spot (own step, own momentum,
    own restart when its loss would rise), so accepted iterates descend and ill-conditioned spots (many
    similar types) need O(√κ) instead of O(κ) iterations. The residual is the gradient mapping's RMS."""
    K, n = U.shape
    x = U
    Zx = term.composition(x)
    fx = term.loss(x, Zx)
    lipschitz = term.curvature(x, Zx)
    y, fy, gy = x, fx, term.gradient(x, Zx)
    momentum = torch.ones_like(fx)
    iterations, backtracks, converged, residual = 0, 0, False, float("inf")
    next_reestimate = _FIRST_REESTIMATE
    while iterations < max_iter:
        iterations += 1
        if iterations == next_reestimate:  # as in the coupled solver: a high-curvature start must not pin the steps
            lipschitz = term.curvature(y)
            next_reestimate *= 2
        for _ in range(_MAX_BACKTRACKS):
            candidate = project_floor_simplex(y - gy / lipschitz, floor, dim=0)
            Zc = term.composition(candidate)
            fc = term.loss(candidate, Zc)
            step = candidate - y
            bound = fy + (gy * step).sum(dim=0) + 0.5 * lipschitz * (step * step).sum(dim=0)
            violated = ~(fc <= bound + _slack(term, fy))  # NaN (a zero composition) counts as violated
            if not bool(violated.any()):
                break
            backtracks += 1
            lipschitz = torch.where(violated, 2.0 * lipschitz, lipschitz)
        if iterations % check_every == 0 or iterations == max_iter:
            residual = _rms(step * lipschitz)
            converged = residual <= tol
        rises = fc > fx
        following = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * momentum * momentum))
        beta = torch.where(rises, torch.zeros_like(momentum), (momentum - 1.0) / following)
        momentum = torch.where(rises, torch.ones_like(momentum), following)
        keep = rises.unsqueeze(0)
        previous = x
        x = torch.where(keep, x, candidate)
        fx = torch.where(rises, fx, fc)
        if converged:
            break
        y = project_floor_simplex(x + beta * (x - previous), floor, dim=0)
        Zy = term.composition(y)
        fy, gy = term.loss(y, Zy), term.gradient(y, Zy)
    value = float(fx.sum())
    dual = x.new_zeros((K, incidence.n_edges))
    return CondatVuResult(x, dual, iterations, converged, residual, 0.0, 0.0, value, backtracks, 0.0, x, value)
