"""The PDHG step of :mod:`s3r.solver.primal_dual` as one compiled CPU loop (numba), for the common case.

Why: on a CPU the torch step is bound by memory traffic, not arithmetic. Each of its ~20 tensor operations streams
the whole batch's edge dual (m × B × p) or the coefficients once more — the two sparse products, the clip, the
relaxation's lerp over every field — so a problem-iteration of the tuning (3,592 spots, 14,739 edges, 20 columns)
moves ~10 MB. Here one problem's whole step is a single pass over its nodes and one over its edges: the edge
dual is read and written once per iteration (the clip, Kᵀ U by scattering into the node rows, and the relaxation
fused into that pass), and a problem runs all the steps up to the next residual check before the next problem
starts, so its rows stay in cache.

The mathematics is the torch step's, term for term (module docstring of ``primal_dual``: the sparse group lasso
prox, the squared loss's dual prox with at most one eliminated covariate, the tv edge dual held in units of λ and
clipped to [−1, 1], per-edge steps folded in), so the two paths give the same iterates up to rounding
(``tests/solver/test_fused_cpu.py``). Every other configuration — CUDA, several torch threads, GLM families, the
coarse levels' aggregated fit, quadratic smoothness, a general sparse K — keeps the torch step.
"""

from __future__ import annotations

import numpy as np
import torch

from s3r.solver.datafit import SquaredLoss
from s3r.solver.operators import IncidenceOperator
from s3r.solver.penalties import GraphL1, SparseGroupLasso

ENABLED = True  # the switch the tests and the side-by-side benchmarks turn off

_kernel = None


def available() -> bool:
    """numba importable (a dependency; without it every solve keeps the torch step)."""
    global _kernel
    if _kernel is None:
        try:
            from s3r.solver.fused_kernels import pdhg_steps as _kernel  # numba: imported at the first fused solve
        except ImportError:
            _kernel = False
    return _kernel is not False


def applicable(datafit, penalty, smooth, K, W: torch.Tensor, unit: bool, folded: bool, stepped_gamma: bool) -> bool:
    """Whether the fused loop computes exactly what the torch step would for this solve. One torch thread only:
    the loop is serial, and with several threads torch's own operations run in parallel."""
    return (ENABLED and W.device.type == "cpu" and W.dtype in (torch.float32, torch.float64) and torch.get_num_threads() == 1
            and type(datafit) is SquaredLoss and (datafit.Z is None or datafit.Z.shape[1] == 1) and not stepped_gamma
            and type(penalty) is SparseGroupLasso and penalty.row_weight is None
            and type(smooth) is GraphL1 and unit and folded and type(K) is IncidenceOperator and available())


def for_solve(datafit, penalty, smooth, K, W, edge_r, rho: float, *, unit: bool, folded: bool, stepped_gamma: bool):
    """The fused loop for this solve, or None where the torch step runs (:func:`applicable`)."""
    if not applicable(datafit, penalty, smooth, K, W, unit, folded, stepped_gamma):
        return None
    return FusedSteps(K, edge_r, rho, W.dtype)


class FusedSteps:
    """Runs k PDHG steps of a batch in the compiled loop: z's fields and zt's are the solver's own tensors (shared
    memory, no copies), relaxed in place between the steps; after the k-th step z is left unrelaxed beside zt, as
    the solver's residual check expects."""

    def __init__(self, K: IncidenceOperator, edge_r, rho: float, dtype: torch.dtype):
        self.rho = float(rho)
        self.src = K._src.cpu().numpy().astype(np.int64)
        self.dst = K._dst.cpu().numpy().astype(np.int64)
        w = K._w.view(-1).double().cpu().numpy()
        r = np.asarray(edge_r.view(-1).double().cpu().numpy() if torch.is_tensor(edge_r) else edge_r, dtype=np.float64)
        self.np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.w = np.ascontiguousarray(w, dtype=self.np_dtype)
        self.se = np.ascontiguousarray(np.broadcast_to(w / r, w.shape), dtype=self.np_dtype)  # the folded K's values, diag(1/r_e) K

    def run(self, k: int, z, zt, s, datafit, penalty) -> None:
        n, B, p = z.W.shape
        a = lambda T: T.detach().numpy()  # noqa: E731  (CPU tensors: views of the same memory)
        major = lambda T: T.transpose(0, 1).contiguous()  # noqa: E731  problem-major copies: a problem's rows contiguous
        elim = datafit.Z is not None
        dummy = np.zeros((B, 1), dtype=self.np_dtype)
        tau = s.tau.reshape(-1)
        state = [major(T) for T in (z.W, z.v, z.U, z.pred, z.KtU)]
        steps = [torch.empty_like(T) for T in state]
        _kernel(
            int(k), self.rho, *(a(T) for T in state), *(a(T) for T in steps),
            a(z.gamma) if elim else dummy, a(zt.gamma) if elim else dummy.copy(),
            a(datafit.X.contiguous()), a(major(datafit.y)), a(major(2 * datafit.c)),
            a(datafit.Z[:, 0].contiguous()) if elim else np.zeros(n, dtype=self.np_dtype), elim,
            a(major(penalty.free.reshape(n, B))), a(penalty.factor.contiguous()),
            a(tau.contiguous()), a((s.t3 * s.ds).reshape(-1).contiguous()), a((tau * penalty.alpha).contiguous()),
            a((tau * penalty.beta * penalty.sqrt_n).contiguous()), a(major(s.sigma_v)), a(s.c.reshape(-1).contiguous()),
            self.src, self.dst, self.se, self.w,
            np.empty((n, p), dtype=self.np_dtype), np.empty(p, dtype=self.np_dtype), np.empty(p, dtype=self.np_dtype),
        )
        for T, M in zip((z.W, z.v, z.U, z.pred, z.KtU, zt.W, zt.v, zt.U, zt.pred, zt.KtU), state + steps):
            T.copy_(M.transpose(0, 1))
