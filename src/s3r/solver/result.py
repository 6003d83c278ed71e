"""What every solver returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class SolveResult:
    W: torch.Tensor  # (n, B, p)
    gamma: torch.Tensor | None  # (B, q)
    dual: torch.Tensor | None  # (m, B, p) smoothness dual, for warm starts
    data_dual: torch.Tensor | None  # (n, B) data-fit dual, for warm starts
    objective: np.ndarray  # (B,)
    primal_residual: np.ndarray  # (B,) relative
    dual_residual: np.ndarray  # (B,) relative (0 where the method has no dual)
    converged: np.ndarray  # (B,) bool
    iterations: np.ndarray  # (B,) iterations until each problem met the tolerance (or max_iter)
    seconds: float
    method: str
    step: np.ndarray | None = None  # (B,) final primal step τ, reused by warm starts
    trace: list[dict] = field(default_factory=list)  # per check: iteration, objective, residuals (problem 0..B-1)
    working_set: dict | None = None  # working-set solves: final size, outer iterations, whether the zero check passed
    precision: dict | None = None  # mixed-precision solves: float32 iterations and seconds, whether a float64 polish ran
    multilevel: dict | None = None  # coarse-to-fine solves: per level aggregates, iterations, working set (coarsest first)
    constant_start: np.ndarray | None = None  # (B,) flow ratio max|U|/λ of the constant-model start, when it was used
    zeroed: list | None = None  # per problem: columns left at a numerical-noise norm, certified at zero and zeroed
