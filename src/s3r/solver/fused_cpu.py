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
    """Runs k PDHG steps of a batch in the compiled loop, then their check (residuals and objective).

    From its first run to the end of the solve the loop owns the state: a problem-major mirror of z and its step zt
    (a problem's rows contiguous) made once from the solver's tensors, with the batch's data and penalty rows beside
    it. The solver's tensors are not written while it runs: the relaxation z ← z + ρ(zt − z) is left to the next run
    (:meth:`relax_later`), the trace's objective comes from the check (:attr:`objective`), a problem that leaves the
    batch stays where it is in the mirror and the loop skips it (:meth:`leave`), and the solver reads every problem's
    last step back once, at the end (:meth:`state`). After a run z is unrelaxed beside zt, as the solver's residual
    check expects. (Syncing the solver's tensors at every trace entry and exit, and copying the mirror again after
    each exit, was 14 % of a fold job: 19.1 → 16.5 CPU-s without; benchmarks/README.md, session 26.)"""

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
        self.z = self.zt = None  # the mirror: problem-major copies of z's and zt's fields, γ's (B, 1) beside them
        self.fixed = self.x2 = None  # the batch's data, penalty rows and row norms as the loop takes them
        self.act = None  # the mirror's problems still in the solver's batch, in its order
        self.objective = None  # (problems in the batch,) float64: the objective at the last run's last step
        self.steps = None  # the solver's step arrays of the last run, and their loop layout
        self.pending = False  # z's relaxation left to the next run

    def _mirror(self, z, datafit, penalty) -> None:
        n, B, p = z.W.shape
        a = lambda T: T.detach().numpy()  # noqa: E731  (CPU tensors: views of the same memory)
        major = lambda T: T.transpose(0, 1).contiguous()  # noqa: E731
        elim = datafit.Z is not None
        gamma = z.gamma.clone() if elim else torch.zeros((B, 1), dtype=z.W.dtype)
        self.z = [major(getattr(z, f)) for f in self.FIELDS] + [gamma]
        self.zt = [torch.empty_like(T) for T in self.z]
        self.fixed = (a(datafit.X.contiguous()), a(major(datafit.y)), a(major(2 * datafit.c)),
                      a(datafit.Z[:, 0].contiguous()) if elim else np.zeros(n, dtype=self.np_dtype), elim,
                      a(major(penalty.free.reshape(n, B))), a(penalty.factor.contiguous()))
        self.x2 = a(datafit.row_norms2().reshape(-1).contiguous())
        self.act = np.arange(B, dtype=np.int64)

    def _step_arrays(self, s, penalty) -> tuple:
        """The per-problem step arrays in the loop's layout, made again only when the solver's steps changed."""
        if self.steps is None or self.steps[0] is not s:
            a = lambda T: np.ascontiguousarray(T.detach().numpy())  # noqa: E731
            tau = s.tau.reshape(-1)
            self.steps = (s, (a(tau), a((s.t3 * s.ds).reshape(-1)), a(tau * penalty.alpha), a(tau * penalty.beta * penalty.sqrt_n),
                              a(s.sigma_v.transpose(0, 1)), a(s.c.reshape(-1)), a(penalty.alpha).astype(np.float64),
                              a(penalty.beta * penalty.sqrt_n).astype(np.float64)), a(s.ds.reshape(-1)))
        return self.steps[1:]

    def run(self, k: int, z, s, datafit, penalty) -> tuple[torch.Tensor, torch.Tensor]:
        """k steps, then the check of the last one: (rel_p, rel_d), as the solver's ``residuals`` gives them; the
        objective at the last step into :attr:`objective`."""
        if self.z is None:
            self._mirror(z, datafit, penalty)
        n, p = z.W.shape[0], z.W.shape[2]
        a = lambda T: T.detach().numpy()  # noqa: E731
        steps, ds = self._step_arrays(s, penalty)
        out = np.empty((self.act.size, 3), dtype=np.float64)
        _kernel(
            int(k), self.rho, self.pending, self.act, *(a(T) for T in self.z[:5]), *(a(T) for T in self.zt[:5]),
            a(self.z[5]), a(self.zt[5]), *self.fixed, *steps, self.src, self.dst, self.se, self.w,
            np.empty((n, p), dtype=self.np_dtype), np.empty(p, dtype=self.np_dtype), np.empty(p, dtype=self.np_dtype),
            self.x2, ds, self.r, self.r_floor, np.empty((2, p)), out,
        )
        self.pending = False
        self.objective = out[:, 2]
        return torch.from_numpy(out[:, 0]).to(z.W.dtype), torch.from_numpy(out[:, 1]).to(z.W.dtype)

    def leave(self, gone: torch.Tensor) -> np.ndarray:
        """The problems at positions ``gone`` of the batch leave it: their objectives at the last step. The loop skips
        them from now on, so their rows of the mirror keep that step until :meth:`state` reads every problem back."""
        pos = gone.cpu().numpy()
        objective = self.objective[pos]
        keep = np.ones(self.act.size, dtype=bool)
        keep[pos] = False
        self.act, self.objective = self.act[keep], self.objective[keep]
        return objective

    def relax_later(self) -> bool:
        """Take the solver's z ← z + ρ(zt − z) onto the mirror, done by the next run; False before the first run."""
        self.pending = self.z is not None
        return self.pending

    def state(self, elim: bool) -> dict | None:
        """The last step's fields of every problem of the batch, in its order and the solver's layout (the batch on
        axis 1; γ (B, q)), those that left included; None before the first run."""
        if self.z is None:
            return None
        out = {f: M.transpose(0, 1).contiguous() for f, M in zip(self.FIELDS, self.zt)}
        return {**out, "gamma": self.zt[5].clone() if elim else None}
