"""Benchmark (issue 11, session 8): a prototype ADMM whose W-step is a linear solve, against the PDHG.

**Verdict of the measurement (benchmarks/README.md, "Session 8 — ADMM with a Laplacian W-step"): no-go.** It takes
3–7× fewer iterations than the PDHG but one iteration costs ~11× a PDHG iteration at 10⁴ spots and 17× at 10⁵ (a
sparse LU solve of n × |working set| per CG step), and its iteration count grows with n about as fast as the PDHG's:
2–5× more CPU at 10⁴. It stays here as the measured prototype (exact, certified with the PDHG's residuals), not as
library code; only ``tv`` fits were run through it (graph_l1, quadratic, covariates and masks are coded, untested).

    python benchmarks/solver_admm.py restricted --n 10000 --level medium [--set RELAX=1.8 ...]
        # fit with the PDHG, take the last restricted problem of its working set, solve it cold with the ADMM
    python benchmarks/solver_admm.py budget --n 100000 --pdhg-iter 2000 --admm-iter 100
        # the working set's first restricted problem at n spots: PDHG (float32) and ADMM at similar CPU budgets
    python benchmarks/solver_grid.py ... --variant admm:ALGO=admm   # the whole fit, restricted solves by this ADMM

The algorithm (numpy / scipy, float64, one problem of a batch at a time):

    min_W  f(W) + g(K W) + h(W)

f the weighted squared loss (covariates γ eliminated exactly), g the smoothness term (λ‖·‖₁ for tv / graph_l1,
λ‖·‖² for quadratic), h the sparse group lasso with its masks and penalty factors. Split E = K W (prox of g) and
V = W (prox of h); scaled duals U_E, U_V:

    W⁺ = argmin f(W) + ρ_E/2 ‖K W − E + U_E‖² + ρ_V/2 ‖W − V + U_V‖²
         i.e. (H + ρ_E KᵀK ⊗ I + ρ_V I) W = Mᵀ2C̃y + ρ_E Kᵀ(E − U_E) + ρ_V (V − U_V)
    E⁺ = prox_{g/ρ_E}(K̂W⁺ + U_E),   V⁺ = prox_{h/ρ_V}(ŴW⁺ + U_V)       (hats: over-relaxed, a K W⁺ + (1 − a) E)
    U_E += K̂W⁺ − E⁺,                U_V += Ŵ⁺ − V⁺

H = blockdiag_i(2c̃_i x_i x_iᵀ) is rank one per spot; the Laplacian part ρ_E KᵀK + ρ_V I is the same for every
feature column, so it is factored once (sparse LU of an n × n matrix; 2-D spot graphs fill little) and used as the
preconditioner of a warm-started CG on the whole system. The Laplacian solve moves information across the whole
graph in one step, which a first-order primal–dual step does one graph hop at a time. Quadratic smoothness needs no
E split (its λ KᵀK enters the matrix directly).

Stopping uses the primal–dual solver's certificate at (V, v, U): P = g_h + Mᵀv + KᵀU with g_h = ρ_V U_V ∈ ∂h(V),
v = ∇φ(M V) (covariates at their optimum), U = ρ_E U_E ∈ ∂g(E); D_U = K V − E with E ∈ ∂g*(U). Both relative to
the terms they balance, as in :mod:`s3r.solver.primal_dual`, so "converged" means the same for both algorithms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from s3r.solver.penalties import GraphQuadratic
from s3r.solver.result import SolveResult

OUT = Path(__file__).resolve().parent / "out"
RELAX = 1.6
CG_MAX = 50
CG_FRACTION = 0.1  # CG stops at this fraction of the smaller ADMM residual (inexact steps with shrinking errors)
ADAPT_EVERY = 10
ADAPT_RATIO = 5.0
ADAPT_MAX = 50
CHECK_EVERY = 1
RHO_V_SCALE = 1.0
ADAPT_MODE = 0  # 0: Boyd's per-block residual balancing; 1: ρ_E from the certificate's rel_p / rel_d
RHO_E_SCALE = 1.0


class _Problem:
    """One problem of the batch in numpy float64."""

    def __init__(self, datafit, penalty, smooth, K, b):
        self.X = datafit.X.double().cpu().numpy()
        self.y = datafit.y[:, b].double().cpu().numpy()
        self.c = datafit.c[:, b].double().cpu().numpy()
        self.Z = None if datafit.Z is None else datafit.Z.double().cpu().numpy()
        self.n, self.p = self.X.shape
        if self.Z is not None:
            G = (self.Z * self.c[:, None]).T @ self.Z
            G = G + 1e-12 * max(float(np.diag(G).max()), 1e-300) * np.eye(G.shape[0])
            self.Gi = np.linalg.inv(G)
        self.alpha = float(penalty.alpha[b])
        self.beta = float(penalty.beta[b])
        self.factor = penalty.factor.double().cpu().numpy()
        self.sqrt_n = penalty.sqrt_n
        self.free = penalty.free[:, b, 0].double().cpu().numpy()
        self.all_free = bool((self.free > 0).all())
        self.lam = float(smooth.lam.view(-1)[b]) if smooth is not None else 0.0
        self.quadratic = isinstance(smooth, GraphQuadratic)
        self.K = None if (K is None or smooth is None or self.lam == 0) else sp.csr_matrix(K.to_scipy(), dtype=np.float64)
        self.KT = None if self.K is None else self.K.T.tocsr()
        self.L = None if self.K is None else (self.KT @ self.K).tocsc()

    def ctilde(self, r):
        """C̃ r with C̃ = C − CZ(ZᵀCZ)⁻¹ZᵀC (the covariates eliminated), r (n,)."""
        cr = self.c * r
        if self.Z is None:
            return cr
        return cr - self.c * (self.Z @ (self.Gi @ (self.Z.T @ cr)))

    def pred(self, W):
        return np.einsum("ij,ij->i", W, self.X)

    def data_grad(self, W):
        """v = ∇φ at MW with γ optimal, and γ."""
        m = self.pred(W)
        if self.Z is None:
            return 2 * self.c * (m - self.y), None
        gamma = self.Gi @ (self.Z.T @ (self.c * (self.y - m)))
        return 2 * self.c * (m + self.Z @ gamma - self.y), gamma

    def prox_h(self, A, step):
        thr = step * self.alpha * self.factor
        U = A - np.clip(A, -thr, thr)
        if not self.all_free:
            U *= self.free[:, None]
        col = np.sqrt((U * U).sum(0))
        shrink = np.clip(1.0 - step * self.beta * self.sqrt_n * self.factor / np.maximum(col, 1e-300), 0.0, None)
        return U * shrink

    def h_value(self, W):
        return float(self.alpha * (np.abs(W).sum(0) * self.factor).sum() + self.beta * self.sqrt_n * (np.sqrt((W * W).sum(0)) * self.factor).sum())



def _rebalance(r: float, s: float) -> float | None:
    """Residual balancing factor √(r/s), clipped to [0.1, 10] (unbounded when a prox variable stops moving), or None
    while the two residuals are within ADAPT_RATIO of each other."""
    if r > ADAPT_RATIO * s or s > ADAPT_RATIO * r:
        return float(np.clip(np.sqrt(r / max(s, 1e-300)), 0.1, 10.0))
    return None

def _solve_one(P: _Problem, W0, U0, rho0, tol, max_iter, stats):
    n, p = P.n, P.p
    has_E = P.K is not None and not P.quadratic
    quad = P.K is not None and P.quadratic
    d_data = 2 * P.c * (P.X * P.X).sum(1)  # per-spot curvature along x_i
    rho_V = float(rho0) if rho0 is not None else RHO_V_SCALE * max(float(d_data.mean()), 1e-12)
    rho_E = RHO_E_SCALE * rho_V if has_E else 0.0
    W = W0.copy()
    V = P.prox_h(W, 1.0 / rho_V)
    E = P.K @ W if has_E else None
    # warm dual: U_E from the given smoothness dual (same meaning), U_V from stationarity
    yE = None
    if has_E:
        yE = np.clip(U0, -P.lam, P.lam) if U0 is not None else np.zeros_like(E)
    v, _ = P.data_grad(W)
    yV = -(v[:, None] * P.X)
    if has_E:
        yV -= P.KT @ yE
    if quad:
        yV -= 2 * P.lam * (P.KT @ (P.K @ W))
    UE = None if yE is None else yE / max(rho_E, 1e-300)
    UV = yV / rho_V
    rhs0 = (2 * P.ctilde(P.y))[:, None] * P.X

    def factor():
        A = rho_V * sp.identity(n, format="csc")
        if has_E:
            A = A + rho_E * P.L
        elif quad:
            A = A + 2 * P.lam * P.L
        if P.K is None:
            return lambda R: R / rho_V
        lu = spla.splu(sp.csc_matrix(A), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        stats["factorizations"] += 1
        return lu.solve

    def apply_A(D):
        out = (2 * P.ctilde(P.pred(D)))[:, None] * P.X + rho_V * D
        if has_E:
            out += rho_E * (P.KT @ (P.K @ D))
        elif quad:
            out += 2 * P.lam * (P.KT @ (P.K @ D))
        return out

    solve = factor()
    rel_p = rel_d = np.inf
    cg_tol = 1e-2
    it = 0
    converged = False
    adaptations = 0
    for it in range(1, max_iter + 1):
        # W-step: PCG warm-started at W
        b = rhs0 + rho_V * (V - UV)
        if has_E:
            b += rho_E * (P.KT @ (E - UE))
        r = b - apply_A(W)
        bn = np.linalg.norm(b)
        z = solve(r)
        d = z.copy()
        rz = float((r * z).sum())
        for k in range(CG_MAX):
            if np.linalg.norm(r) <= cg_tol * bn:
                break
            Ad = apply_A(d)
            a = rz / float((d * Ad).sum())
            W += a * d
            r -= a * Ad
            z = solve(r)
            rz_new = float((r * z).sum())
            d = z + (rz_new / rz) * d
            rz = rz_new
            stats["cg"] += 1
        # E, V steps (over-relaxed) and duals
        KW = P.K @ W if has_E else None
        V_old = V
        Wh = RELAX * W + (1 - RELAX) * V
        V = P.prox_h(Wh + UV, 1.0 / rho_V)
        UV += Wh - V
        if has_E:
            E_old = E
            Kh = RELAX * KW + (1 - RELAX) * E
            A_ = Kh + UE
            t = P.lam / rho_E
            E = A_ - np.clip(A_, -t, t)
            UE += Kh - E
        # certificate at (V, v(V), U)
        if it % CHECK_EVERY == 0:
            v, _ = P.data_grad(V)
            MtV = v[:, None] * P.X
            gh = rho_V * UV
            Pm = gh + MtV
            scale_p = max(np.linalg.norm(MtV), np.linalg.norm(gh))
            KV = P.K @ V if P.K is not None else None
            if has_E:
                KtU = P.KT @ (rho_E * UE)
                Pm += KtU
                scale_p = max(scale_p, np.linalg.norm(KtU))
            if quad:
                KtU = P.KT @ (2 * P.lam * KV)
                Pm += KtU
                scale_p = max(scale_p, np.linalg.norm(KtU))
            if not P.all_free:
                Pm *= P.free[:, None]
            rel_p = np.linalg.norm(Pm) / max(scale_p, 1e-300)
            rel_d = 0.0
            if has_E:
                R2 = float(np.abs(P.L).sum(0).max())
                scale_u = max(np.linalg.norm(KV), 1e-3 * (R2 / 2) ** 0.5 * np.linalg.norm(V))
                rel_d = np.linalg.norm(KV - E) / max(scale_u, 1e-300)
            stats["trace"].append((it, rel_p, rel_d, rho_V, rho_E))
            if rel_p <= tol and rel_d <= tol:
                converged = True
                break
            cg_tol = max(CG_FRACTION * min(rel_p, max(rel_d, rel_p if not has_E else rel_d)), 1e-3 * tol)
        # residual balancing (Boyd): standard ADMM residuals per block
        if adaptations < ADAPT_MAX and it % ADAPT_EVERY == 0:
            changed = False
            rV = np.linalg.norm(W - V) / max(np.linalg.norm(W), np.linalg.norm(V), 1e-300)
            sV = np.linalg.norm(V - V_old) * rho_V / max(np.linalg.norm(rho_V * UV), 1e-300)
            f = _rebalance(rV, sV)  # bounded: at W = V = 0, sV = 0
            if f is not None:
                rho_V *= f
                UV /= f
                changed = True
            f = None
            if has_E and ADAPT_MODE == 1:
                f = _rebalance(rel_d, rel_p)
            elif has_E:
                rE = np.linalg.norm(KW - E) / max(np.linalg.norm(KW), np.linalg.norm(E), 1e-300)
                sE = np.linalg.norm(P.KT @ (E - E_old)) * rho_E / max(np.linalg.norm(P.KT @ (rho_E * UE)), 1e-300)
                f = _rebalance(rE, sE)
            if f is not None:
                rho_E *= f
                UE /= f
                changed = True
            if changed:
                adaptations += 1
                solve = factor()
    v, gamma = P.data_grad(V)
    U = None
    if has_E:
        U = rho_E * UE
    elif quad:
        U = 2 * P.lam * (P.K @ V)
    obj = float((P.c * (P.y - P.pred(V) - (0 if gamma is None else P.Z @ gamma)) ** 2).sum()) + P.h_value(V)
    if P.K is not None:
        KV = P.K @ V
        obj += P.lam * (float((KV * KV).sum()) if P.quadratic else float(np.abs(KV).sum()))
    return dict(W=V, gamma=gamma, U=U, v=v, obj=obj, rel_p=rel_p, rel_d=rel_d, conv=converged, it=it, rho=rho_V)


def admm(datafit, penalty, smooth, K, W0, gamma0, *, v0=None, U0=None, tau0=None, tau_ref=None, tol=1e-6, max_iter=50_000,
         callback=None, **_ignored) -> SolveResult:
    start = time.perf_counter()
    n, B, p = W0.shape
    dtype, device = W0.dtype, W0.device
    outs = []
    stats = {"cg": 0, "factorizations": 0, "trace": []}
    for b in range(B):
        P = _Problem(datafit, penalty, smooth, K, b)
        U0b = None if U0 is None else U0[:, b, :].double().cpu().numpy()
        rho0 = None if tau0 is None or not np.isfinite(float(tau0[b])) else float(tau0[b])
        outs.append(_solve_one(P, W0[:, b, :].double().cpu().numpy(), U0b, rho0, tol, max_iter, stats))
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
    W = torch.stack([t(o["W"]) for o in outs], 1)
    gamma = None if datafit.Z is None else torch.stack([t(o["gamma"]) for o in outs], 0)
    U = None if outs[0]["U"] is None else torch.stack([t(o["U"]) for o in outs], 1)
    res = SolveResult(
        W=W, gamma=gamma, dual=U, data_dual=torch.stack([t(o["v"]) for o in outs], 1),
        objective=np.array([o["obj"] for o in outs]), primal_residual=np.array([o["rel_p"] for o in outs]),
        dual_residual=np.array([o["rel_d"] for o in outs]), converged=np.array([o["conv"] for o in outs]),
        iterations=np.array([o["it"] for o in outs], dtype=np.int64), seconds=time.perf_counter() - start, method="admm",
        step=np.array([o["rho"] for o in outs]), trace=[],
    )
    res.stats = stats
    return res


# --------------------------------------------------------------------------------------------------- the benchmark
def _problem(n: int):
    from s3r.graph import knn_graph
    from s3r.simulate import simulate

    sim = simulate("three_regions", geometry="uniform", n_spots=n, seed=0, design="expression", sigma=0.2)
    return sim, knn_graph(sim.coords, k=7)


def _capture(n: int, level: str, *, first: bool):
    """The restricted problems the working set hands its inner solver during a PDHG fit: the first or the last."""
    import s3r.solver.batch as batch_module
    from s3r import S3R
    from s3r.solver.primal_dual import primal_dual
    from working_set import LEVELS, MAX_ITER, TOL

    class Stop(Exception):
        pass

    seen = {}

    def inner(*a, **k):
        seen.update(args=a, kwargs=k)
        if first:
            raise Stop
        res = primal_dual(*a, **k)
        seen.update(result=res)
        return res

    sim, graph = _problem(n)
    batch_module.primal_dual = inner
    model = S3R("tv", **LEVELS[level], k=7, tol=TOL, max_iter=MAX_ITER, dtype="float64")
    try:
        model.fit(sim.X, sim.y, sim.coords, spot_graph=graph)
    except Stop:
        pass
    return seen


def _row(name, res, cpu, wall, **extra) -> dict:
    return {"algo": name, "iterations": int(res.iterations[0]), "converged": bool(res.converged[0]), "cpu_s": round(cpu, 2),
            "wall_s": round(wall, 2), "primal_residual": float(res.primal_residual[0]), "dual_residual": float(res.dual_residual[0]),
            "objective": float(res.objective[0]), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "load": os.getloadavg()[0], **extra}


def restricted(args) -> list[dict]:
    """The PDHG fit's last restricted problem (the final working set), solved cold by the ADMM to 1e-5."""
    from working_set import TOL

    seen = _capture(args.n, args.level, first=False)
    a, ref = seen["args"], seen["result"]
    W0 = torch.zeros_like(a[4])
    c0, t0 = time.process_time(), time.perf_counter()
    res = admm(*a[:4], W0, None if a[5] is None else torch.zeros_like(a[5]), tol=TOL, max_iter=args.max_iter)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    rel = (float(res.objective[0]) - float(ref.objective[0])) / abs(float(ref.objective[0]))
    return [_row("admm (cold)", res, cpu, wall, n=args.n, level=args.level, columns=int(W0.shape[2]), cg=res.stats["cg"],
                 factorizations=res.stats["factorizations"], pdhg_iterations_warm=int(ref.iterations[0]),
                 pdhg_objective=float(ref.objective[0]), objective_rel_diff=rel, settings=args.set)]


def budget(args) -> list[dict]:
    """The working set's first restricted problem (cold), PDHG in float32 and ADMM, each for a fixed iteration budget."""
    from s3r.solver.datafit import SquaredLoss
    from s3r.solver.penalties import GraphL1, SparseGroupLasso
    from s3r.solver.primal_dual import primal_dual
    from working_set import TOL

    seen = _capture(args.n, "medium", first=True)
    a, k = seen["args"], dict(seen["kwargs"])
    df, pen, sm, K = a[:4]
    f32 = lambda t: None if t is None else t.to(torch.float32)  # noqa: E731
    a32 = (SquaredLoss(f32(df.X), f32(df.y), f32(df.o), f32(df.Z)),
           SparseGroupLasso(f32(pen.alpha), f32(pen.beta), f32(pen.factor), df.n, f32(pen.free.squeeze(-1))),
           GraphL1(f32(sm.lam.view(-1))), K.astype(torch.float32), f32(a[4]), f32(a[5]))
    rows = []
    for name, fn, call, iters in [("pdhg float32", primal_dual, a32, args.pdhg_iter), ("admm", admm, a, args.admm_iter)]:
        c0, t0 = time.process_time(), time.perf_counter()
        res = fn(*call, **{**k, "tol": TOL, "max_iter": iters})
        rows.append(_row(name, res, time.process_time() - c0, time.perf_counter() - t0, n=args.n, columns=int(a[4].shape[2])))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("restricted")
    r.add_argument("--n", type=int, default=10_000)
    r.add_argument("--level", default="medium")
    r.add_argument("--max-iter", type=int, default=5000)
    r.add_argument("--set", nargs="*", default=[], help="CONST=V: this module's constants (RELAX, ADAPT_MAX, ...)")
    b = sub.add_parser("budget")
    b.add_argument("--n", type=int, default=100_000)
    b.add_argument("--pdhg-iter", type=int, default=2000)
    b.add_argument("--admm-iter", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for item in getattr(args, "set", []):
        name, value = item.split("=")
        globals()[name] = type(globals()[name])(float(value))
    rows = restricted(args) if args.cmd == "restricted" else budget(args)
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "solver_admm.jsonl").open("a") as fh:
        for row in rows:
            fh.write(json.dumps({"cmd": args.cmd, **row}) + "\n")
            print(json.dumps(row))


if __name__ == "__main__":
    main()
