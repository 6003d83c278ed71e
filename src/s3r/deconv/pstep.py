"""Transcript fractions for fixed edge weights: count likelihood + exact graph TV (s3r.deconv.condat_vu).

    min_V  Σ_i f_i(V_i) + Σ_e c_e Σ_k |V_ki − V_kj|    s.t. every spot's V_i on the simplex

f_i is the spot's count −log-likelihood (s3r.deconv.counts.CountTerm), c_e = λ·w_e. The stop is a
certificate: both Condat–Vũ residuals (O(1), because f is divided by the median library size) and the TV
complementarity gap relative to the objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from s3r.deconv.condat_vu import condat_vu, tv_objective
from s3r.deconv.counts import CountTerm
from s3r.deconv.operators import Incidence

# the V-step's σ rule and restart schedule (s3r.deconv.condat_vu; measured in benchmarks/README.md, session
# 8): the first σ from the start's jumps, rebalanced against the gap too, and a first restart at 100 (a warm
# start's curvature estimates are good, and each re-estimate costs about 20 iterations' products)
DUAL_START = "jumps"
BALANCE_GAP = True
FIRST_REESTIMATE = 100


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


def objective(term: CountTerm, V: torch.Tensor, incidence: Incidence, edge_costs: torch.Tensor) -> float:
    return tv_objective(term, V, incidence, edge_costs)


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
    r = condat_vu(term, start, incidence, edge_costs, dual=dual, sigma=sigma, tol=tol, max_iter=max_iter,
                  check_every=check_every, dual_start=DUAL_START, balance_gap=BALANCE_GAP,
                  first_reestimate=FIRST_REESTIMATE)
    return PStepResult(r.point, r.dual, r.iterations, r.converged, r.primal_residual, r.dual_residual, r.gap,
                       r.objective, r.backtracks, r.sigma)
