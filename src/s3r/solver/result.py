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

    def one(self, b: int) -> "SolveResult":
        """Problem ``b`` of the batch as a one-problem result (batch axes kept, of size 1), e.g. for one target of
        several solved together. The working-set and timing figures stay the batch's (they describe the shared solve)."""
        keep = lambda T, axis=1: None if T is None else T.narrow(axis, b, 1)  # noqa: E731
        pick = lambda a: None if a is None else np.asarray(a)[b:b + 1]  # noqa: E731
        per = lambda d: None if d is None else {k: ([v[b]] if isinstance(v, list) and len(v) == B else v) for k, v in d.items()}  # noqa: E731
        B = self.W.shape[1]
        multilevel = None
        if self.multilevel is not None:
            multilevel = {**per(self.multilevel), "levels": [per(lv) for lv in self.multilevel["levels"]]}
        return SolveResult(
            W=keep(self.W), gamma=keep(self.gamma, 0), dual=keep(self.dual), data_dual=keep(self.data_dual),
            objective=pick(self.objective), primal_residual=pick(self.primal_residual), dual_residual=pick(self.dual_residual),
            converged=pick(self.converged), iterations=pick(self.iterations), seconds=self.seconds, method=self.method,
            step=pick(self.step), trace=[per(e) for e in self.trace], working_set=self.working_set, precision=per(self.precision),
            multilevel=multilevel, constant_start=pick(self.constant_start), zeroed=None if self.zeroed is None else [self.zeroed[b]],
        )
