"""Batched proximal Newton for elastic-net GLMs: many responses, one design, one tensor program.

    min_u  Σ_i w_i ℓ(y_ib, x̃_iᵀ u_b + o_ib) + λ_b Σ_j f_j (a |u_bj| + (1 − a)/2 u_bj²)     for every response b

x̃ = [1, x] (coordinate 0 is the intercept, f_0 = 0), weights w sum to 1. Each outer step builds the quadratic
model of the data fit (gradient and Fisher Hessian, p × p per response) and minimises model + penalty by
cyclic coordinate descent in that p-dimensional space, vectorised over responses: a sweep costs O(B p²)
whatever n is, which is why this beats a per-gene loop over the n × p data (glmnet's IRLS-CD, batched).
A backtracking line search on the true objective makes each step a descent step (Lee, Sun & Saunders 2014),
since count likelihoods are not globally Lipschitz. For the gaussian the model is exact, so one outer step
(on a Gram matrix computed once per path) is the whole solve.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

ARMIJO = 1e-4
GRAM_FISTA_MIN_B = 16  # from this many responses, batched FISTA on the Gram beats Python-level coordinate steps
MAX_HALVINGS = 30


class Problem:
    """Data shared by every solve along a path (and its cached gaussian Gram)."""

    def __init__(self, Xa: torch.Tensor, Y: torch.Tensor, w: torch.Tensor, offset: torch.Tensor | None, family, pf: torch.Tensor, fit_intercept: bool):
        self.Xa, self.Y, self.w, self.offset, self.family = Xa, Y, w, offset, family
        self.pf = pf  # (p+1,), pf[0] = 0
        self.fit_intercept = fit_intercept
        self.gaussian = family.name == "gaussian"
        self._gram = None
        self._outer = None
        self.structure = None  # OneHotStructure when a block of features is one-hot (perturb-seq designs)
        self.sums = None  # PoissonSums: the Poisson data fit from sufficient statistics (no n × responses pass per step)
        self.tikhonov = None  # K = TauᵀTau (q, q), zero row and column 0: the ridge part becomes ½(1 − a) λ uᵀKu

    @property
    def B(self):
        return self.Y.shape[1]

    def eta(self, U: torch.Tensor, idx=None) -> torch.Tensor:
        e = self.Xa @ U.T
        if self.offset is not None:
            e = e + (self.offset if idx is None or self.offset.shape[1] == 1 else self.offset[:, idx])
        return e

    def Ycols(self, idx):
        return self.Y if idx is None else self.Y[:, idx]

    def datafit(self, eta: torch.Tensor, idx=None, exact: bool = False) -> torch.Tensor:
        """Σ w ℓ; without ``exact`` up to a y-only constant (all a line search compares), which skips y log y.

        For poisson and gamma ℓ − nll depends on y alone, so the exact value is nll plus a per-response constant
        computed once (a y log y pass over n × B per solve was a large share of a Poisson path)."""
        fam = self.family.subset(idx)
        Y = self.Ycols(idx)
        if exact and self.family.name in ("poisson", "gamma"):
            if getattr(self, "_exact_shift", None) is None:
                zero = torch.zeros_like(self.Y[:1])
                self._exact_shift = (self.w.unsqueeze(1) * (self.family.loss(self.Y, zero) - self.family.nll(self.Y, zero))).sum(0)
            shift = self._exact_shift if idx is None else self._exact_shift[idx]
            return (self.w.unsqueeze(1) * fam.nll(Y, eta)).sum(0) + shift
        f = fam.loss if exact else fam.nll
        return (self.w.unsqueeze(1) * f(Y, eta)).sum(0)

    def gram(self):
        """Gaussian: H = X̃ᵀ W X̃ and c = X̃ᵀ W (Y − o), once per problem."""
        if self._gram is None:
            Xw = self.Xa * self.w.unsqueeze(1)
            H = Xw.T @ self.Xa
            R = self.Y if self.offset is None else self.Y - self.offset
            c = (Xw.T @ R).T  # (B, p+1)
            yy = (self.w.unsqueeze(1) * R * R).sum(0)
            self._gram = (H, c, yy)
        return self._gram


class _small_ops:
    """The p-dimensional model solves touch (B, p) tensors only: one CPU thread avoids hand-off costs that
    dominate such small ops (and are far worse on a loaded machine)."""

    def __init__(self, like):
        self.active = like.device.type == "cpu" and like.numel() < 5_000_000
        self.saved = None

    def __enter__(self):
        if self.active:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.saved is not None:
            torch.set_num_threads(self.saved)
        return False


def penalty(U, lam, l1_ratio, pf, K=None):
    """λ Σ_j f_j (a|u_j| + (1 − a)/2 u_j²); with a Tikhonov K, λ (a Σ_j f_j |u_j| + (1 − a)/2 uᵀKu)."""
    if K is None:
        return lam * ((pf * (l1_ratio * U.abs() + 0.5 * (1 - l1_ratio) * U * U)).sum(-1))
    return lam * (l1_ratio * (pf * U.abs()).sum(-1) + 0.5 * (1 - l1_ratio) * ((U @ K) * U).sum(-1))


def _newton_step(P, grad, Hs, Ua, la, l1_ratio, free, sa, *, tol, max_sweeps):
    """Minimise the quadratic model of the data fit plus the penalty at Ua: (new U, sweeps, the model decrease
    (≤ 0, for the line search), δᵀHδ (for the stopping rule)). A Tikhonov ridge is smooth, so it joins the model
    (gradient λ(1 − a)Ku, Hessian λ(1 − a)K) and the coordinate descent sees the lasso part alone."""
    pf, K = P.pf, P.tikhonov
    if K is None:
        Un, sw = coordinate_descent(Hs, grad, Ua, la, l1_ratio, pf, free, sa, tol=tol, max_sweeps=max_sweeps)
        delta = Un - Ua
        dec = (grad * delta).sum(-1) + penalty(Un, la, l1_ratio, pf) - penalty(Ua, la, l1_ratio, pf)
        return Un, sw, dec, torch.einsum("bi,bij,bj->b", delta, Hs, delta)
    r = la * (1 - l1_ratio)
    g = grad + r.unsqueeze(1) * (Ua @ K)
    H = (Hs if Hs.dim() == 3 else Hs.unsqueeze(0)) + r[:, None, None] * K
    Un, sw = coordinate_descent(H, g, Ua, la * l1_ratio, 1.0, pf, free, sa, tol=tol, max_sweeps=max_sweeps)
    delta = Un - Ua
    dec = (g * delta).sum(-1) + la * l1_ratio * (pf * (Un.abs() - Ua.abs())).sum(-1)
    return Un, sw, dec, torch.einsum("bi,bij,bj->b", delta, H, delta)


class OneHotStructure:
    """A design whose features include a one-hot block (each cell in at most one group, e.g. its perturbation).

    X̃ᵀ diag(v) X̃ is then group sums, not an n × q² product: the one-hot × one-hot block is diagonal (v summed
    per group), one-hot × other columns are per-group sums of v·z, and only the few other columns (intercept,
    covariates) need outer products. The solver's columns are centred (and maybe scaled): X̃ = X̃_raw T, so the
    Hessian is Tᵀ H_raw T. Cost O(n B r + B q³) instead of O(n B q²), r = 1 + number of covariates.
    """

    def __init__(self, groups: torch.Tensor, onehot: torch.Tensor, other: torch.Tensor, Z: torch.Tensor, T: torch.Tensor):
        self.groups = groups  # (n,) group of each row, −1 when in none
        self.onehot = onehot  # (k,) solver columns of the one-hot block
        self.other = other  # (r,) solver columns of the rest (0 = intercept)
        self.Z = Z  # (n, r) raw values of the other columns
        self.T = T  # (q, q) raw → solver columns
        rows = torch.nonzero(groups >= 0).flatten()
        k = onehot.numel()
        with warnings.catch_warnings():  # sparse CSR is "beta" in torch, and the fastest group sum there (≈ 4× index_add_)
            warnings.simplefilter("ignore", UserWarning)
            self.G = torch.sparse_coo_tensor(torch.stack([groups[rows], rows]), torch.ones(rows.numel(), dtype=Z.dtype, device=Z.device),
                                             (k, groups.numel())).coalesce().to_sparse_csr()  # (k, n) group indicator
        r = Z.shape[1]
        self.ZZ = (Z.unsqueeze(2) * Z.unsqueeze(1)).reshape(-1, r * r)

    def hessians(self, wh: torch.Tensor) -> torch.Tensor:
        B = wh.shape[1]
        k, r, q = self.onehot.numel(), self.other.numel(), self.T.shape[0]
        H = torch.zeros((B, q, q), dtype=wh.dtype, device=wh.device)
        for l in range(r):  # other[0] is the intercept (z = 1): its group sums are the one-hot diagonal too
            s = self.G @ (wh if l == 0 else wh * self.Z[:, l : l + 1])  # (k, B)
            if l == 0:
                H[:, self.onehot, self.onehot] = s.T
            H[:, self.onehot, self.other[l]] = s.T
            H[:, self.other[l], self.onehot] = s.T
        oo = (wh.T @ self.ZZ).reshape(B, r, r)
        H[:, self.other.unsqueeze(1), self.other.unsqueeze(0)] = oo
        return self.T.T @ H @ self.T


def _hessians(P: Problem, h: torch.Tensor) -> torch.Tensor:
    """(B, p+1, p+1) X̃ᵀ diag(w h_b) X̃ for all responses as one GEMM: (x_i ⊗ x_i) rows against w h."""
    n, q = P.Xa.shape
    wh = h * P.w.unsqueeze(1)
    if P.structure is not None:
        return P.structure.hessians(wh)
    if P._outer is None and n * q * q <= 6e7:
        P._outer = (P.Xa.unsqueeze(2) * P.Xa.unsqueeze(1)).reshape(n, q * q)
    if P._outer is not None:
        return (wh.T @ P._outer).reshape(-1, q, q)
    return torch.einsum("nb,np,nq->bpq", wh, P.Xa, P.Xa)


def coordinate_descent(H, r, U, lam, l1_ratio, pf, free, scale, *, tol, max_sweeps):
    """Minimise rᵀ(u − U) + ½(u − U)ᵀH(u − U) + pen(u) over u, batched; r is the model gradient at U.

    H is (q, q) shared or (B, q, q). Stops when max_j H_jj Δu_j² ≤ tol² · scale_b for every response (tol: relative coefficient change).
    On the CPU the loop runs in NumPy: its steps are ~10 ops on (B,) vectors, where torch's per-op overhead
    (several µs) was most of a Poisson path's time.
    """
    if H.device.type == "cpu":
        args = (H.numpy(), r.numpy(), U.numpy().copy(), lam.numpy(), float(l1_ratio), pf.numpy(), free.numpy(), scale.numpy(), tol, max_sweeps)
        u, sweeps = _cd_numpy(*args)
        return torch.from_numpy(u), sweeps
    u = U.clone()
    r = r.clone()
    shared = H.dim() == 2
    diag = torch.diagonal(H, dim1=-2, dim2=-1)  # (q,) or (B, q)
    l1 = lam * l1_ratio  # (B,)
    l2 = lam * (1 - l1_ratio)
    coords = [j for j in range(u.shape[1]) if bool(free[j])]
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        worst = torch.zeros_like(lam)
        for j in coords:
            a = diag[j] if shared else diag[:, j]
            z = a * u[:, j] - r[:, j]
            thr = l1 * pf[j]
            den = a + l2 * pf[j]
            new = torch.sign(z) * torch.clamp(z.abs() - thr, min=0) / torch.clamp(den, min=1e-300)
            new = torch.where(den > 0, new, torch.zeros_like(new))
            d = new - u[:, j]
            u[:, j] = new
            if shared:
                r.addcmul_(d.unsqueeze(1), H[j].unsqueeze(0))
            else:
                r.addcmul_(d.unsqueeze(1), H[:, :, j])
            worst = torch.maximum(worst, a * d * d)
        if bool((worst <= tol * tol * scale).all()):
            break
    return u, sweeps


def _cd_numpy(H, r, u, lam, l1_ratio, pf, free, scale, tol, max_sweeps):
    """NumPy coordinate descent on (q, B) layouts (one coordinate of every response contiguous); responses
    that have converged are dropped from later sweeps once they are half of those still swept."""
    shared = H.ndim == 2
    rows = H if shared else np.ascontiguousarray(H.transpose(1, 2, 0))  # rows[j]: row j of every H, (q, B)
    diag = np.ascontiguousarray(np.diagonal(H, axis1=-2, axis2=-1).T) if not shared else np.diagonal(H)
    l1, l2 = lam * l1_ratio, lam * (1 - l1_ratio)
    limit = tol * tol * scale
    coords = [j for j in range(u.shape[1]) if bool(free[j])]
    out = np.ascontiguousarray(u.T)  # (q, B)
    ut, rt = out.copy(), np.ascontiguousarray(r.T)
    live = np.arange(u.shape[0])  # responses still swept (columns of ut, rt)
    tmp = np.empty_like(rt)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        worst = np.zeros(live.size)
        for j in coords:
            a = diag[j] if shared else diag[j]
            z = a * ut[j] - rt[j]
            den = a + l2 * pf[j]
            new = np.maximum(np.abs(z) - l1 * pf[j], 0.0)
            new *= np.sign(z)
            new /= np.maximum(den, 1e-300)
            new[den <= 0] = 0.0
            d = new - ut[j]
            ut[j] = new
            rt += np.multiply.outer(rows[j], d, out=tmp) if shared else np.multiply(rows[j], d, out=tmp)
            np.maximum(worst, a * d * d, out=worst)
        going = worst > limit
        if not going.any():
            break
        if going.sum() * 2 <= live.size:  # shrink: write back the finished responses, keep sweeping the rest
            out[:, live] = ut
            keep = np.flatnonzero(going)
            live = live[keep]
            ut, rt, tmp = ut[:, keep].copy(), rt[:, keep].copy(), np.empty((rt.shape[0], keep.size))
            l1, l2, limit = l1[keep], l2[keep], limit[keep]
            if not shared:
                rows, diag = np.ascontiguousarray(rows[:, :, keep]), np.ascontiguousarray(diag[:, keep])
    out[:, live] = ut
    return np.ascontiguousarray(out.T), sweeps


def gram_fista(H, c, U, lam, l1_ratio, pf, free, scale, *, tol, max_iter):
    """Gaussian, shared Gram: diagonally preconditioned FISTA with gradient restart, batched over responses.

    One (B, q) × (q, q) product per iteration instead of q Python-level coordinate steps, so many responses cost
    almost what one does. Preconditioning by diag(H) (in effect standardising the features) makes the
    scaled Hessian nearly the identity for one-hot designs, so few iterations are needed.
    """
    d = torch.clamp(torch.diagonal(H), min=1e-300)
    s = 1 / torch.sqrt(d)
    Hs = H * s.unsqueeze(0) * s.unsqueeze(1)
    v = torch.ones(H.shape[0], dtype=H.dtype, device=H.device)
    for _ in range(100):  # power iteration: λ_max of the scaled Gram (≥ 1)
        v = Hs @ v
        v = v / torch.linalg.vector_norm(v)
    Ld = float(v @ Hs @ v) * 1.01 + 1e-12
    step = 1 / (Ld * d)  # (q,) per-coordinate steps
    fixed = ~free
    l1 = (lam * l1_ratio).unsqueeze(1) * pf  # (B, q)
    l2 = (lam * (1 - l1_ratio)).unsqueeze(1) * pf
    x = U.clone()
    y = x.clone()
    t = 1.0
    it = 0
    for it in range(1, max_iter + 1):
        g = y @ H - c
        z = y - step * g
        xn = torch.sign(z) * torch.clamp(z.abs() - step * l1, min=0) / (1 + step * l2)
        xn[:, fixed] = U[:, fixed]
        dx = xn - x
        if bool(((d * dx * dx).max(1).values <= tol * tol * scale * 1e-2).all()):
            x = xn
            break
        restart = ((y - xn) * (xn - x)).sum(1) > 0  # O'Donoghue–Candès gradient restart, per response
        tn = (1 + (1 + 4 * t * t) ** 0.5) / 2
        mom = (t - 1) / tn
        y = xn + torch.where(restart.unsqueeze(1), torch.zeros_like(dx), mom * dx)
        t = tn if not bool(restart.all()) else 1.0
        x = xn
    return x, it


def _armijo(objective, F0, model_dec):
    """Batched backtracking from t = 1: halve t per problem until objective(t) ≤ F0 + ARMIJO·t·model_dec.
    Returns (t, accepted, F(t)); t = 0 where no descent was found (numerically at the optimum)."""
    t = torch.ones_like(F0)
    accepted = torch.zeros(F0.shape, dtype=torch.bool, device=F0.device)
    Fnew = F0.clone()
    for _ in range(MAX_HALVINGS):
        F_t = objective(t)
        ok = (~accepted) & torch.isfinite(F_t) & (F_t <= F0 + ARMIJO * t * model_dec + 1e-13 * F0.abs())
        Fnew = torch.where(ok, F_t, Fnew)
        accepted |= ok
        if bool(accepted.all()):
            break
        t = torch.where(accepted, t, t / 2)
    return torch.where(accepted, t, torch.zeros_like(t)), accepted, Fnew


def solve(P: Problem, lam, l1_ratio, U0, *, free=None, scale=None, tol=1e-6, max_outer=50, max_sweeps=2000):
    """One point of the path for every response: returns (U, info) with objective, iterations, converged."""
    B, q = U0.shape
    dt, dev = U0.dtype, U0.device
    pf = P.pf
    if free is None:
        free = torch.ones(q, dtype=torch.bool, device=dev)
    if not P.fit_intercept:
        free = free.clone()
        free[0] = False
    scale = torch.ones(B, dtype=dt, device=dev) if scale is None else scale
    U = U0.clone()
    if P.gaussian:
        H, c, yy = P.gram()
        with _small_ops(U):
            if P.tikhonov is not None:  # the model is exact: one Newton step (per-response Hessians) is the solve
                U, sweeps = _newton_step(P, U @ H - c, H, U, lam, l1_ratio, free, scale, tol=tol, max_sweeps=max_sweeps)[:2]
            elif U.shape[0] >= GRAM_FISTA_MIN_B:
                U, sweeps = gram_fista(H, c, U, lam, l1_ratio, pf, free, scale, tol=tol, max_iter=max_sweeps * 10)
            else:
                U, sweeps = coordinate_descent(H, U @ H - c, U, lam, l1_ratio, pf, free, scale, tol=tol, max_sweeps=max_sweeps)
        fit = 0.5 * (yy - 2 * (U * c).sum(-1) + ((U @ H) * U).sum(-1))
        obj = fit + penalty(U, lam, l1_ratio, pf, P.tikhonov)
        return U, {"objective": obj, "fit": fit, "iterations": torch.full((B,), 1, device=dev), "sweeps": sweeps, "converged": torch.ones(B, dtype=torch.bool, device=dev)}

    if P.sums is not None:
        with _small_ops(U):  # classes × keys × responses: small, so one thread (hand-offs cost more than they save)
            return _solve_sums(P, lam, l1_ratio, U, free, scale, tol=tol, max_outer=max_outer, max_sweeps=max_sweeps)
    converged = torch.zeros(B, dtype=torch.bool, device=dev)
    iters = torch.zeros(B, dtype=torch.int64, device=dev)
    eta = P.eta(U)
    F = P.datafit(eta) + penalty(U, lam, l1_ratio, pf, P.tikhonov)
    total_sweeps = 0
    for it in range(1, max_outer + 1):
        act = torch.nonzero(~converged).flatten()
        if act.numel() == 0:
            break
        full = act.numel() == B
        idx = None if full else act
        Ua, la, sa = U[act], lam[act], scale[act]
        ea = eta if full else eta[:, act]
        Ya = P.Ycols(idx)
        fam = P.family.subset(idx)
        g, h = fam.gradient_weight(Ya, ea)
        g = g * P.w.unsqueeze(1)
        grad = g.T @ P.Xa  # (Ba, q)
        Hs = _hessians(P, h)
        with _small_ops(Ua):
            Un, sw, model_dec, newton = _newton_step(P, grad, Hs, Ua, la, l1_ratio, free, sa, tol=tol, max_sweeps=max_sweeps)
        total_sweeps += sw
        delta = Un - Ua
        Xd = P.Xa @ delta.T
        F0 = F[act]
        t, accepted, Fnew = _armijo(lambda t: P.datafit(ea + t * Xd, idx) + penalty(Ua + t.unsqueeze(1) * delta, la, l1_ratio, pf, P.tikhonov),
                                    F0, model_dec)
        Ua = Ua + t.unsqueeze(1) * delta
        U[act] = Ua
        F[act] = torch.where(accepted, Fnew, F0)
        ea_new = ea + t * Xd
        if full:
            eta = ea_new
        else:
            eta[:, act] = ea_new
        iters[act] += 1
        done = (newton <= tol * tol * sa) | (~accepted)
        converged[act] = done
    fit = P.datafit(eta, exact=True)
    F = fit + penalty(U, lam, l1_ratio, pf, P.tikhonov)
    return U, {"objective": F, "fit": fit, "eta": eta, "iterations": iters, "sweeps": total_sweeps, "converged": converged}


def _solve_sums(P: Problem, lam, l1_ratio, U, free, scale, *, tol, max_outer, max_sweeps):
    """:func:`solve`'s proximal Newton when the data fit comes from :class:`~s3r.glm.exposure.PoissonSums`:
    the same steps, line search and stopping rule, with no pass over the cells."""
    B = U.shape[0]
    dev, pf, sums = U.device, P.pf, P.sums
    converged = torch.zeros(B, dtype=torch.bool, device=dev)
    iters = torch.zeros(B, dtype=torch.int64, device=dev)
    F = sums.value(U) + penalty(U, lam, l1_ratio, pf, P.tikhonov)
    total_sweeps = 0
    for _ in range(max_outer):
        act = torch.nonzero(~converged).flatten()
        if act.numel() == 0:
            break
        idx = None if act.numel() == B else act
        Ua, la, sa = U[act], lam[act], scale[act]
        grad, Hs = sums.gradient_hessian(Ua, idx)
        Un, sw, model_dec, newton = _newton_step(P, grad, Hs, Ua, la, l1_ratio, free, sa, tol=tol, max_sweeps=max_sweeps)
        total_sweeps += sw
        delta = Un - Ua
        F0 = F[act]

        def objective(t):
            Ut = Ua + t.unsqueeze(1) * delta
            return sums.value(Ut, idx) + penalty(Ut, la, l1_ratio, pf, P.tikhonov)

        t, accepted, Fnew = _armijo(objective, F0, model_dec)
        U[act] = Ua + t.unsqueeze(1) * delta
        F[act] = torch.where(accepted, Fnew, F0)
        iters[act] += 1
        converged[act] = (newton <= tol * tol * sa) | (~accepted)
    fit = sums.exact(U)
    return U, {"objective": fit + penalty(U, lam, l1_ratio, pf, P.tikhonov), "fit": fit, "eta": None, "iterations": iters, "sweeps": total_sweeps,
               "converged": converged}
