"""The PDHG step of :mod:`s3r.solver.primal_dual` as one compiled CPU loop (numba), for the common case.

Why: on a CPU the torch step is bound by memory traffic, not arithmetic. Each of its ~20 tensor operations streams
the whole batch's edge dual (m × B × p) or the coefficients once more — the two sparse products, the clip, the
relaxation's lerp over every field — so a problem-iteration of the tuning (3,592 spots, 14,739 edges, 20 columns)
moves ~10 MB. Here (:mod:`s3r.solver.fused_kernels`) a problem's step is one pass over its nodes for the primal,
one for the data dual and one over its edges (the clip, Kᵀ U by scattering into the node rows, the relaxation); a
problem runs every step up to the next residual check before the next problem starts, so its rows stay in cache;
and the check itself is computed there, on the rows in cache. The round-0 fold job of 12 DLPFC targets: 29.0 →
19.3 CPU-s, a final fit 19.3 → 12.6 (benchmarks/README.md, session 25).

The mathematics is the torch step's, term for term (the sparse group lasso prox, the squared loss's dual prox with
at most one eliminated covariate, the tv edge dual held in units of λ and clipped to [−1, 1], per-edge steps folded
in, the residuals of ``primal_dual``'s check), so the two paths give the same iterates and decisions up to rounding
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
    """Runs k PDHG steps of a batch in the compiled loop, then their residual check.

    The loop works on a problem-major mirror of the solver's state (z and its step zt; a problem's rows contiguous),
    made from the solver's tensors at the first run and after problems left the batch (:meth:`drop`). Between runs it
    stays the authority: the solver's relaxation z ← z + ρ(zt − z) is left to the next run (:meth:`relax_later`), and
    the solver's tensors are written only where it reads them (:meth:`sync`: the trace's objective, an exit, the end).
    After a run z is unrelaxed beside zt, as the solver's residual check expects."""

    FIELDS = ("W", "v", "U", "pred", "KtU")

    def __init__(self, K: IncidenceOperator, edge_r, rho: float, dtype: torch.dtype):
        self.rho = float(rho)
        self.src = K._src.cpu().numpy().astype(np.int64)
        self.dst = K._dst.cpu().numpy().astype(np.int64)
        w = K._w.view(-1).double().cpu().numpy()
        r = np.asarray(edge_r.view(-1).double().cpu().numpy() if torch.is_tensor(edge_r) else edge_r, dtype=np.float64)
        self.np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.w = np.ascontiguousarray(w, dtype=self.np_dtype)
        self.se = np.ascontiguousarray(np.broadcast_to(w / r, w.shape), dtype=self.np_dtype)  # the folded K's values, diag(1/r_e) K
        self.r = np.ascontiguousarray(np.broadcast_to(r, w.shape), dtype=np.float64)  # per-edge bounds: σ_u = c / r_e
        self.r_floor = 1e-3 * (float(K.norm_bound()) / 2) ** 0.5  # the edge residual's scale floor, × ‖W⁺‖
        self.z = self.zt = None  # the mirror: problem-major copies of z's and zt's fields
        self.fixed = self.x2 = None  # the batch's data, penalty rows and row norms as the loop takes them
        self.pending = self.synced = False  # z's relaxation left to the next run; the solver's tensors up to date

    def run(self, k: int, z, zt, s, datafit, penalty) -> tuple[torch.Tensor, torch.Tensor]:
        """k steps, then the residual check of the last one: (rel_p, rel_d), as the solver's ``residuals`` gives them."""
        n, B, p = z.W.shape
        a = lambda T: T.detach().numpy()  # noqa: E731  (CPU tensors: views of the same memory)
        major = lambda T: T.transpose(0, 1).contiguous()  # noqa: E731
        elim = datafit.Z is not None
        if self.z is None:  # the state, and the batch's fixed arrays (they change only when problems leave: drop)
            self.z = [major(getattr(z, f)) for f in self.FIELDS]
            self.zt = [torch.empty_like(T) for T in self.z]
            self.fixed = (a(datafit.X.contiguous()), a(major(datafit.y)), a(major(2 * datafit.c)),
                          a(datafit.Z[:, 0].contiguous()) if elim else np.zeros(n, dtype=self.np_dtype), elim,
                          a(major(penalty.free.reshape(n, B))), a(penalty.factor.contiguous()))
            self.x2 = a(datafit.row_norms2().reshape(-1).contiguous())
        rel = np.empty((B, 2), dtype=np.float64)
        dummy = np.zeros((B, 1), dtype=self.np_dtype)
        tau = s.tau.reshape(-1)
        _kernel(
            int(k), self.rho, self.pending, *(a(T) for T in self.z), *(a(T) for T in self.zt),
            a(z.gamma) if elim else dummy, a(zt.gamma) if elim else dummy.copy(), *self.fixed,
            a(tau.contiguous()), a((s.t3 * s.ds).reshape(-1).contiguous()), a((tau * penalty.alpha).contiguous()),
            a((tau * penalty.beta * penalty.sqrt_n).contiguous()), a(major(s.sigma_v)), a(s.c.reshape(-1).contiguous()),
            self.src, self.dst, self.se, self.w,
            np.empty((n, p), dtype=self.np_dtype), np.empty(p, dtype=self.np_dtype), np.empty(p, dtype=self.np_dtype),
            self.x2, a(s.ds.reshape(-1).contiguous()), self.r, self.r_floor, rel,
        )
        self.pending = self.synced = False
        return torch.from_numpy(rel[:, 0]).to(z.W.dtype), torch.from_numpy(rel[:, 1]).to(z.W.dtype)

    def sync(self, z, zt) -> None:
        """Write the mirror's z (unrelaxed) and zt into the solver's tensors (γ is shared, not mirrored)."""
        if self.z is None or self.synced:
            return
        for f, M, Mt in zip(self.FIELDS, self.z, self.zt):
            getattr(z, f).copy_(M.transpose(0, 1))
            getattr(zt, f).copy_(Mt.transpose(0, 1))
        self.synced = True

    def relax_later(self) -> bool:
        """Take the solver's z ← z + ρ(zt − z) onto the mirror, done by the next run; False where there is no mirror
        (after :meth:`drop`): the solver relaxes its own tensors, which the next run copies."""
        self.pending = self.z is not None
        return self.pending

    def drop(self) -> None:
        """Forget the mirror (after :meth:`sync`): the batch changed, the next run copies the solver's state again."""
        self.z = self.zt = self.fixed = self.x2 = None
