"""Preconditioned, over-relaxed primal–dual hybrid gradient (Chambolle–Pock), batched.

    min_{W, γ}  h(W) + φ(M(W, γ)) + g(K W)

h is the sparse group lasso (exact prox, exact zeros), φ the data fit seen through the prediction operator M,
g the smoothness term (λ‖·‖₁ for tv / graph_l1, λ‖·‖² for quadratic). Both φ and g enter through their
conjugates, whose proxes are closed form:

    W⁺ = prox_{τh}(W − τ(Mᵀv + KᵀU)),            γ⁺ = γ − τ_γ Zᵀv
    v⁺ = prox_{Σ_v φ*}(v + Σ_v M(2W⁺ − W, 2γ⁺ − γ)),  U⁺ = prox_{σ g*}(U + σ K(2W⁺ − W))

Putting the data fit in the dual frees the primal step from its curvature bound, which on this rank-one-per-spot
fit is what makes a gradient step crawl; Σ_v is diagonal over spots (Pock & Chambolle 2011 preconditioning).
Convergence needs τ‖Σ^{1/2}𝒦‖² ≤ 1; the budget is split between the two dual blocks and τ is adapted by
residual balancing (Goldstein et al. 2015) a decaying, finite number of times, never below a quarter of
the magnitude-matched step (``STEP_FLOOR``).

``precondition`` (default ``PRECONDITION``) replaces the one smoothness-dual step bound by per-edge steps
σ_e ∝ 1/r_e from the local node loads (:meth:`LinearOperator.edge_bounds`, Pock & Chambolle 2011 with row weights):
the condition still holds entry by entry, edges away from the highest-degree nodes step further. The primal step
stays one scalar per problem, as the group-lasso prox needs (its prox under a non-uniform diagonal metric has no
closed form), and the data rows keep Σ_v ∝ 1/‖x_i‖², which is the Pock–Chambolle choice with exponent 2 there.

With no smooth term left in the primal, the relaxed iteration z ← z + ρ(T z − z) converges for ρ < 2
(Condat 2013); ρ = 1.9 with per-edge dual steps is the measured best on these problems (benchmarks/README.md).

On one CPU thread the common case (squared loss, sparse group lasso, tv on the edge incidence) runs its steps and their
residual checks in the compiled loop of :mod:`s3r.solver.fused_cpu` (same iterates); balancing, exits, trace stay here.

Stopping: P ∈ ∂_W L and D ∈ ∂_{v,U} L at the new iterate (the primal and dual residuals); both below ``tol``
relative to the terms they balance certifies a solution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import numpy as np
import torch

from s3r.solver import fused_cpu
from s3r.solver.penalties import GraphL1, batch_norm, per_problem_sum, row_of
from s3r.solver.result import SolveResult
from s3r.solver.step_size import initial_step

SAFETY = 0.99
DATA_SHARE = 0.5  # share of the step budget given to the data-fit dual when a smoothness dual exists
RELAX = 1.9  # over-relaxation ρ ∈ (0, 2): z ← z + ρ(T z − z); 1.9 with per-edge steps: 18–38 % fewer iterations than 1.6
# residual balancing: trigger ratio, number of changes, smallest factor. The number of changes stays finite (the
# convergence proof of adaptive PDHG needs that), but 30 was too few with per-edge dual steps: on the constant-model
# problem of tests/model (λ ten times its scale, α just under its zero threshold) the budget was spent in the first
# thousand iterations, the primal residual then led the dual one 5,000:1 with τ frozen, and it fell 9 % per 2,000
# iterations (not converged at 100,000). With 100 changes: 10,090 iterations (22,300 with the old steps and ρ 1.6).
ADAPT_RATIO, ADAPT_MAX, ADAPT_FLOOR = 5.0, 100, 1.1
# the balancing never takes τ below this share of the magnitude-matched step (``step_size.reference_step``, or the start where
# lower): it balances *relative* residuals, which can ask for ever smaller steps that do not help — on dense,
# near-unpenalised maps of the realistic grid (α, β ~4e-4 of their scales) τ fell to 1/15–1/200 of the reference and the
# fits did not converge in 40,000 iterations; with the floor they did (19,200 and 26,230). 0.5 left a cvxpy test
# unconverged; 0.25 changed no iteration count of the 10³/10⁴ grid (benchmarks/README.md, session 14)
STEP_FLOOR = 0.25
# fold the per-edge dual step σ into K (s3r.solver.operators.LinearOperator.row_scaled; a batch's per-problem part goes on
# 2W⁺ − W) so U + σ ⊙ K(2W⁺ − W) is one sparse product: 10⁵ spots × 16 columns, one problem: 36.6 → 30 CPU ms for that
# update (session 11); 14,700 edges × 20 problems × 25 columns: 9.8 → 5.6 ms (session 15)
FOLD_STEP = True
# the tv dual held in units of λ (Ũ = U/λ): its prox is one scalar clip for the batch (16,500 × 20 × 25: 5.8 → 2.0 ms)
UNIT_DUAL = True
PRECONDITION = True  # per-edge dual steps from the node loads (Pock–Chambolle) instead of one bound from the max degree
# stall test (``stall=`` iterations, used by the float32 stage of mixed precision): a problem has stalled when the best
# max(rel_p, rel_d) seen so far has not fallen by STALL_DROP (10 %) over the last ``stall`` iterations while it sits
# below ``stall_below`` (a precision floor, not the start-up transient); the solve stops when every unconverged one has
STALL_DROP = 0.9
# per-problem exit: at a residual check, the problems of a batch that have converged leave it — their iterate (the
# prox output the solve would return had it stopped there) is kept and the loop goes on with the others' slices
# only, so a large batch costs what its unconverged problems cost (issue 13). A converged problem no longer touches
# the others (residuals, steps and proxes are per problem; the step balancing skips it), so the others' iterates are
# those of the loop without the exit, up to rounding. What still couples the problems of a batch: the balancing's
# budget and factor (ADAPT_MAX changes, each decaying the factor) are counted per batch, so a problem's steps depend
# on when the others rebalanced (as before: a problem solved alone takes another path to the same optimum); and a
# stalled problem stays in the loop until every unconverged one has stalled (the stall stop is per batch).
EXIT = True
# the smoothness dual's residual (two sparse products: ~2/3 of a check, a check ~3 steps; issue 13) only where it can decide:
# some problem's other residuals within tol, or a check whose values are read (every 5th, the last, under a stall test)
LAZY_EDGE_CHECK = True
CHECK_EVERY, READ_EVERY = 10, 5  # residual checks every 10th iteration; every 5th is read in full (balancing, trace, stall)


@dataclass
class _State:
    """One PDHG iterate plus the linear images the next step needs (all linear, so they average exactly)."""

    W: torch.Tensor  # (n, B, p)
    gamma: torch.Tensor | None  # (B, q)
    v: torch.Tensor  # (n, B)
    U: torch.Tensor | None  # (m, B, p)
    pred: torch.Tensor  # (n, B)  M(W, γ)
    KtU: torch.Tensor | None  # (n, B, p)

    def empty_like(self) -> "_State":
        return _State(**{f.name: (None if getattr(self, f.name) is None else torch.empty_like(getattr(self, f.name))) for f in fields(self)})

    def select(self, idx: torch.Tensor) -> "_State":
        """The problems ``idx`` of the batch (γ is (B, q); every other field has the batch on axis 1)."""
        taken = lambda T, axis: None if T is None else T.index_select(axis, idx)  # noqa: E731
        return _State(**{f.name: taken(getattr(self, f.name), 0 if f.name == "gamma" else 1) for f in fields(self)})

    def relax_(self, other: "_State", rho: float) -> None:
        """self ← self + ρ(other − self), field by field, in place."""
        for f in fields(self):
            mine = getattr(self, f.name)
            if mine is not None:
                mine.lerp_(getattr(other, f.name), rho)


class _Buffers:
    """Scratch tensors of the hot loop: at 10⁵ spots a fresh edge-sized tensor costs more than the arithmetic."""

    def __init__(self, W: torch.Tensor, U: torch.Tensor | None):
        self.W = torch.empty_like(W)  # 2W⁺ − W, then the prox's scratch
        self.U = None if U is None else torch.empty_like(U)
        self.U2 = None if U is None else torch.empty_like(U)


def primal_dual(
    datafit,
    penalty,
    smooth,
    K,
    W0: torch.Tensor,
    gamma0: torch.Tensor | None,
    *,
    v0: torch.Tensor | None = None,
    U0: torch.Tensor | None = None,
    tau0: torch.Tensor | None = None,
    tol: float = 1e-6,
    max_iter: int = 50_000,
    check_every: int = CHECK_EVERY,
    adapt: bool = True,
    callback=None,
    precondition: bool | None = None,
    stall: int | None = None,
    stall_below: float = float("inf"),
    exit_converged: bool | None = None,
    tau_ref: torch.Tensor | None = None,
) -> SolveResult:
    """Solve the B problems of the batch (module docstring); ``exit_converged`` (default :data:`EXIT`) lets each
    converged problem leave the loop at the residual check that certifies it. ``tau_ref`` (B,): the step the
    balancing's floor is measured against (default: this problem's ``reference_step``; the working-set loop
    passes the full problem's)."""
    start = time.perf_counter()
    precondition = PRECONDITION if precondition is None else bool(precondition)
    (dtype, device), (n, B, p) = (W0.dtype, W0.device), W0.shape
    tiny = torch.finfo(dtype).tiny
    has_gamma = gamma0 is not None
    eliminate = has_gamma and getattr(datafit, "eliminates_covariates", False)
    has_smooth = K is not None and smooth is not None
    R = float(K.norm_bound()) if has_smooth else 0.0
    lam = smooth.lam.view(-1) if has_smooth else torch.zeros(B, dtype=dtype, device=device)
    smooth_on = has_smooth and R > 0
    share = torch.where(lam > 0, torch.full_like(lam, DATA_SHARE), torch.ones_like(lam)) if smooth_on else torch.ones_like(lam)
    x2 = datafit.row_norms2()
    x2 = torch.clamp(x2, min=max(float(x2.mean()) * 1e-8, float(tiny)))
    kappa = 2.0 if has_gamma and not eliminate else 1.0  # block-diagonal majorant when a stepped γ shares the data dual
    live = datafit.c > 0  # spots whose data dual is not pinned at 0 (o_i = 0)
    lam_on = lam.view(1, -1, 1) > 0
    edge_r = None
    if smooth_on:  # (m, 1, 1) per-edge bounds, or the global one
        edge_r = (torch.as_tensor(K.edge_bounds(), dtype=dtype, device=device).clamp_min(float(tiny)).view(-1, 1, 1) if precondition
                  else max(R, 1e-300))

    exit_on = (EXIT if exit_converged is None else bool(exit_converged)) and B > 1 and all(
        hasattr(o, "select") for o in (datafit, penalty) + ((smooth,) if has_smooth else ()))

    Ks_edge = _folded(K, edge_r, dtype, device) if smooth_on and FOLD_STEP else None
    unit = smooth_on and UNIT_DUAL and isinstance(smooth, GraphL1)  # the edge dual held in units of λ
    lam_all = lam  # the whole batch's λ (``lam`` follows the problems still in the loop)

    inverse = lambda a: torch.where(a > 0, 1.0 / torch.clamp(a, min=tiny), torch.zeros_like(a))  # noqa: E731

    class Steps:
        def __init__(self, tau):
            self.tau = tau
            self.t3 = tau.view(1, -1, 1)
            self.sigma_v = SAFETY * share.view(1, -1) / (kappa * tau.view(1, -1) * x2)  # (n, B)
            self.ds = (lam if unit else torch.ones_like(lam)).view(1, -1, 1)  # what one unit of the stored edge dual is worth
            self.kt = row_of(self.t3 * self.ds, p)  # multiplies Kᵀ Ũ in the primal step
            # per-problem part of the edge dual step (in the stored dual's units), then the per-edge one
            self.c = (SAFETY * (1 - share) / tau).view(1, -1, 1) * inverse(self.ds) if smooth_on else None
            self.sigma_u = self.c / edge_r if smooth_on else None  # (m or 1, B, 1)
            self.Ks, self.cw = Ks_edge, None if self.c is None else row_of(self.c, p)  # the dual update's matrix, factor on 2W⁺ − W
            if Ks_edge is not None and tau.numel() == 1:  # one problem: its whole step folded into K, no multiply on W
                self.Ks, self.cw = K.row_scaled(self.sigma_u.reshape(-1).expand(K.shape[0]).contiguous()), None
            self.tau_g = None
            if has_gamma and not eliminate:
                self.tau_g = (SAFETY / torch.clamp(kappa * datafit.covariate_norm2(self.sigma_v), min=tiny)).view(-1, 1)

    def step(z: _State, out: _State, s: Steps) -> None:
        """One PDHG step from z, written into out's tensors (nothing edge- or W-sized is allocated)."""
        V = out.W
        if smooth_on:
            torch.mul(z.KtU, -s.kt, out=V)
            V.add_(z.W)
        else:
            V.copy_(z.W)
        datafit.add_adjoint_(V, -s.tau.view(1, -1) * z.v)
        penalty.prox_(V, s.tau, buf.W)
        if eliminate:  # pred holds MW only; γ comes out of the constrained dual prox
            out.pred.copy_(datafit.predict_w(out.W))
            v_new, g_new = datafit.dual_prox_eliminated(z.v + s.sigma_v * (2 * out.pred - z.pred), s.sigma_v)
            out.v.copy_(v_new)
            out.gamma.copy_(g_new)
        else:
            if has_gamma:
                out.gamma.copy_(z.gamma - s.tau_g * (z.v.T @ datafit.Z))
            out.pred.copy_(datafit.predict(out.W, out.gamma))
            out.v.copy_(datafit.dual_prox(z.v + s.sigma_v * (2 * out.pred - z.pred), s.sigma_v))
        if smooth_on:
            torch.mul(out.W, 2.0, out=buf.W).sub_(z.W)
            if s.Ks is not None:  # out.U = z.U + diag(σ_edge) K ((2W⁺ − W) c) in one sparse product
                if s.cw is not None:
                    buf.W.mul_(s.cw)
                torch.addmm(z.U.view(z.U.shape[0], -1), s.Ks, buf.W.view(buf.W.shape[0], -1), out=out.U.view(out.U.shape[0], -1))
            else:
                KW = K.forward_into(buf.W, buf.U)
                torch.addcmul(z.U, KW, s.sigma_u, out=out.U)
            if unit:
                out.U.clamp_(-1.0, 1.0)
            else:
                smooth.dual_prox_(out.U, s.sigma_u)
            K.adjoint_into(out.U, out.KtU)

    def residuals(z: _State, z1: _State, s: Steps, full_check: bool):
        """Relative primal and dual residuals of the step z → z1, per problem (edge-sized work in buf); unless
        ``full_check``, a dual residual without its edge part (a lower bound) where no problem can pass anyway."""
        dW = z.W - z1.W
        dv = z.v - z1.v
        # P = (W − W⁺)/τ − Mᵀ(v − v⁺) − (KᵀU − KᵀU⁺) = g_h + Mᵀv⁺ + KᵀU⁺ with g_h ∈ ∂h(W⁺), scaled by the largest of the
        # three; P, then g_h = P − Mᵀv⁺ − KᵀU⁺, in one buffer (a temporary per term made a check ~3 steps' work)
        P = torch.div(dW, s.t3)
        datafit.add_adjoint_(P, -dv)
        scale_p = datafit.adjoint_norm(z1.v)
        if smooth_on:
            ds = row_of(s.ds, p)
            P.addcmul_(z.KtU, ds, value=-1.0).addcmul_(z1.KtU, ds)
            scale_p = torch.maximum(scale_p, batch_norm(z1.KtU) * s.ds.view(-1))
        p2 = per_problem_sum(P * P)
        datafit.add_adjoint_(P, -z1.v)
        if smooth_on:
            P.addcmul_(z1.KtU, ds, value=-1.0)
        scale_p = torch.maximum(scale_p, batch_norm(P))
        if has_gamma and not eliminate:
            Pg = (z.gamma - z1.gamma) / s.tau_g - dv.T @ datafit.Z
            p2 = p2 + (Pg * Pg).sum(-1)
        rel_p = torch.sqrt(p2) / torch.clamp(scale_p, min=tiny)
        Dv = torch.where(live, dv / s.sigma_v - (z.pred - z1.pred), torch.zeros_like(dv))
        full1 = datafit.predict(z1.W, z1.gamma) if eliminate else z1.pred
        scale_v = torch.maximum(torch.linalg.vector_norm(full1 * live, dim=0), torch.linalg.vector_norm(datafit.y_link * live, dim=0))
        rel_d = torch.linalg.vector_norm(Dv, dim=0) / torch.clamp(scale_v, min=tiny)
        if smooth_on and not full_check and LAZY_EDGE_CHECK and not bool(((rel_p <= tol) & (rel_d <= tol)).any()):
            return rel_p, rel_d
        if smooth_on:
            KW1 = K.forward_into(z1.W, buf.U)
            scale_u = torch.maximum(_edge_norm(KW1, buf.U2), 1e-3 * (R / 2) ** 0.5 * batch_norm(z1.W))
            KdW = K.forward_into(dW, buf.U)
            DU = torch.sub(z.U, z1.U, out=buf.U2).div_(s.sigma_u).sub_(KdW)
            rel_u = torch.where(lam > 0, _edge_norm(DU, buf.U), torch.zeros_like(lam))
            rel_d = torch.maximum(rel_d, rel_u / torch.clamp(scale_u, min=tiny))
        return rel_p, rel_d

    def objective(z: _State) -> torch.Tensor:
        pred = z.pred + datafit.Z @ z.gamma.T if eliminate else z.pred
        obj = datafit.value(pred) + penalty.value(z.W)
        if smooth_on:
            obj = obj + smooth.value(K.forward_into(z.W, buf.U))
        return obj

    own = initial_step(datafit, lam, R, x2)
    tau_ref = own if tau_ref is None else tau_ref.to(dtype)
    # a warm step per problem; one that has not run yet (NaN or 0: a fresh problem batched with continuing ones) starts at its own
    s = Steps(own if tau0 is None else torch.where(torch.isfinite(tau0) & (tau0 > 0), tau0.to(dtype), own))
    tau_lo = torch.minimum(tau_ref * STEP_FLOOR, s.tau) if STEP_FLOOR else None  # the balancing's floor (STEP_FLOOR)
    W = W0.clone()
    gamma = gamma0.clone() if has_gamma else None
    v = v0.clone() if v0 is not None else torch.zeros((datafit.n, B), dtype=dtype, device=device)
    U = KtU = None
    if smooth_on:
        U = U0.clone() if U0 is not None else torch.zeros((K.shape[0], B, p), dtype=dtype, device=device)
        if unit:
            U.mul_(inverse(s.ds)).clamp_(-1.0, 1.0)
        else:
            U = smooth.dual_prox(U, s.sigma_u)
        KtU = K.adjoint(U)
    z = _State(W, gamma, v, U, datafit.predict_w(W) if eliminate else datafit.predict(W, gamma), KtU)
    zt = z.empty_like()
    buf = _Buffers(W, U)

    converged = torch.zeros(B, dtype=torch.bool, device=device)
    iterations = np.full(B, max_iter, dtype=np.int64)
    rel_p = torch.full((B,), float("inf"), dtype=dtype, device=device)
    rel_d = torch.full((B,), float("inf"), dtype=dtype, device=device)
    trace: list[dict] = []
    adapt_factor, adaptations_left = 2.0, ADAPT_MAX
    best = torch.full((B,), float("inf"), dtype=dtype, device=device)  # stall test: best max residual, 10 % steps
    best_at = torch.zeros(B, dtype=torch.int64, device=device)
    # per-problem exit: ``act`` maps the active slices to the batch; the problems that left keep their last prox
    # output (``left``) and its objective, residuals and step (full-length arrays, NaN while active)
    act = torch.arange(B, device=device)
    left: list[tuple[torch.Tensor, _State]] = []
    out_obj, out_p, out_d, out_tau = (np.full(B, np.nan) for _ in range(4))

    def full(values: torch.Tensor, parked: np.ndarray) -> np.ndarray:
        """A per-problem quantity of the whole batch: the active problems' values, the others' as they left."""
        out = parked.copy()
        out[act.cpu().numpy()] = values.double().cpu().numpy()
        return out

    def objective_now() -> torch.Tensor:
        """The objective at zt, the last step's output (the fused loop computes it in its check)."""
        return objective(zt) if fused is None or fused.objective is None else torch.from_numpy(fused.objective)

    fused = fused_cpu.for_solve(datafit, penalty, smooth, K, W, edge_r, RELAX, unit=unit, folded=Ks_edge is not None,
                                stepped_gamma=has_gamma and not eliminate) if smooth_on else None
    it = 0
    while it < max_iter:
        k = 1 if fused is None else min(check_every - it % check_every, max_iter - it)  # compiled: every step to the next check
        checked = step(z, zt, s) if fused is None else fused.run(k, z, s, datafit, penalty)  # fused: its last step checked
        it += k

        if it % check_every == 0 or it == max_iter:
            # every value the balancing, the trace, the stall test and the result read is a full check
            rel_p, rel_d = checked or residuals(z, zt, s, stall is not None or it % (check_every * READ_EVERY) == 0 or it == max_iter)
            newly = (~converged) & (rel_p <= tol) & (rel_d <= tol)
            for b in act[newly].tolist():
                iterations[b] = it
            converged |= newly
            stalled = False
            if stall is not None:
                worst = torch.maximum(rel_p, rel_d)
                better = worst < STALL_DROP * best
                best = torch.where(better, worst, best)
                best_at = torch.where(better, torch.full_like(best_at, it), best_at)
                stuck = converged | ((it - best_at >= stall) & (best < stall_below))
                stalled = bool(stuck.all()) and not bool(converged.all())
            if it % (check_every * 10) == 0 or stalled:
                entry = {"iteration": it, "objective": full(objective_now(), out_obj).tolist(), "primal_residual": full(rel_p, out_p).tolist(),
                         "dual_residual": full(rel_d, out_d).tolist(), "step": full(s.tau, out_tau).tolist()}
                if stalled:
                    entry["stalled"] = True
                trace.append(entry)
                if callback is not None:
                    callback(entry)
            if bool(converged.all()) or stalled:
                break
            if exit_on and bool(converged.any()):  # the converged problems leave; the rest go on with their own slices
                gone, keep = torch.nonzero(converged).flatten(), torch.nonzero(~converged).flatten()
                ids = act[gone].cpu().numpy()
                if fused is None:
                    out_obj[ids] = objective(zt).index_select(0, gone).double().cpu().numpy()
                    left.append((act[gone], zt.select(gone)))
                    z, zt = z.select(keep), zt.select(keep)
                    buf = _Buffers(z.W, z.U)
                else:  # its last step stays in the loop's state, read back with the others' at the end
                    out_obj[ids] = fused.leave(gone)
                out_p[ids], out_d[ids] = rel_p[gone].double().cpu().numpy(), rel_d[gone].double().cpu().numpy()
                out_tau[ids] = s.tau[gone].double().cpu().numpy()
                datafit, penalty = datafit.select(keep), penalty.select(keep)
                smooth = smooth.select(keep) if has_smooth else smooth
                lam, share, live = lam[keep], share[keep], datafit.c > 0
                s = Steps(s.tau[keep])  # the same per-problem steps (each problem's σ and τ_γ depend on its τ only)
                converged, rel_p, rel_d, best, best_at, act = (a[keep] for a in (converged, rel_p, rel_d, best, best_at, act))
                if tau_lo is not None:
                    tau_lo = tau_lo[keep]
            if adapt and adaptations_left > 0 and it % (check_every * READ_EVERY) == 0:
                # residual balancing: a lagging primal residual asks for a larger primal step
                grow = (rel_p > ADAPT_RATIO * rel_d) & ~converged
                shrink = (rel_d > ADAPT_RATIO * rel_p) & ~converged
                if bool(grow.any() or shrink.any()):
                    tau_new = torch.where(grow, s.tau * adapt_factor, torch.where(shrink, s.tau / adapt_factor, s.tau))
                    if tau_lo is not None:
                        tau_new = torch.maximum(tau_new, tau_lo)
                    s = Steps(tau_new)
                    adaptations_left -= 1
                    adapt_factor = max(ADAPT_FLOOR, adapt_factor**0.9)
        if fused is None or not fused.relax_later():  # fused: on its mirror, at its next run
            z.relax_(zt, RELAX)  # z ← z + ρ(T z − z)
    final = fused.state(eliminate) if fused is not None else None
    z = zt if final is None else _State(**final)  # the last prox output: exact zeros, not a relaxed combination
    done = np.ones(B, dtype=bool)
    done[act.cpu().numpy()] = converged.cpu().numpy()
    if left:  # the problems that left come back in their places (the fused loop keeps them in its state)
        z = _State(**{f.name: _merge(getattr(z, f.name), act, [(ids, getattr(st, f.name)) for ids, st in left], B,
                                     0 if f.name == "gamma" else 1) for f in fields(z)})

    if unit:  # back to the dual's own units
        z.U.mul_(lam_all.view(1, -1, 1))
    return SolveResult(
        W=z.W,
        gamma=z.gamma,
        dual=z.U,
        data_dual=z.v,
        objective=full(objective_now(), out_obj),
        primal_residual=full(rel_p, out_p),
        dual_residual=full(rel_d, out_d),
        converged=done,
        iterations=np.minimum(iterations, it),
        seconds=time.perf_counter() - start,
        method="pdhg",
        step=full(s.tau, out_tau),
        trace=trace,
    )


def _folded(K, edge_r, dtype: torch.dtype, device) -> torch.Tensor | None:
    """diag(1/r_e) K as a sparse matrix for the one-product dual update, or None where the operator or the backend
    lacks the sparse product into an output (tried once here on a one-column block, so the loop needs no fallback)."""
    try:
        scale = (1.0 / torch.as_tensor(edge_r, dtype=dtype, device=device)).reshape(-1).expand(K.shape[0])
        Ks = K.row_scaled(scale.contiguous())
        m, n = K.shape
        torch.addmm(torch.zeros((m, 1), dtype=dtype, device=device), Ks, torch.zeros((n, 1), dtype=dtype, device=device),
                    out=torch.empty((m, 1), dtype=dtype, device=device))
        return Ks
    except (RuntimeError, NotImplementedError, AttributeError):
        return None


def _merge(T: torch.Tensor | None, act: torch.Tensor, parts: list, B: int, axis: int) -> torch.Tensor | None:
    """A full-batch tensor from the active problems' slices ``T`` (batch ids ``act``) and the parked ``parts``."""
    if T is None:
        return None
    shape = list(T.shape)
    shape[axis] = B
    out = torch.empty(shape, dtype=T.dtype, device=T.device)
    out.index_copy_(axis, act, T)
    for ids, part in parts:
        out.index_copy_(axis, ids, part)
    return out


def _edge_norm(T: torch.Tensor, work: torch.Tensor) -> torch.Tensor:
    """Frobenius norm per problem of an (m, B, p) tensor, squaring into ``work`` (may be T itself; torch.linalg.vector_norm
    over axes (0, 2) is ~30× slower than this on CPU)."""
    return per_problem_sum(torch.mul(T, T, out=work)).sqrt_()
