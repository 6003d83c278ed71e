"""A log-link count data fit (poisson, negative binomial, gamma) for the primal–dual solver, through its conjugate.

φ(ŷ) = (2/n) Σ_i o_i ℓ(y_i, ŷ_i + offset_i), ℓ the half unit deviance of the family, so the gaussian member is the
squared loss of :class:`s3r.solver.datafit.SquaredLoss` and λ, α, β mean the same across families. The prediction
operator M is the squared loss's, so the solver's data dual, its preconditioning and its residuals carry over.

What changes is the conjugate's prox, which has no closed form: by Moreau's identity prox_{σφ*}(a) = a − σŷ* with
ŷ* = argmin φ(ŷ) + ½‖ŷ − a/σ‖²_σ, separable over spots (one-dimensional, strictly convex), and v = a − σŷ* =
∇φ(ŷ*). With unpenalised covariates eliminated (min over γ of φ(MW + Zγ)) the prox gains the constraint Zᵀv = 0,
i.e. the joint minimisation of Ψ(η, γ) = φ(η) + ½‖η − Zγ − a/σ‖²_σ over the prox points η and γ — still convex, so
Newton's method with a backtracking line search on Ψ solves it; the q × q Schur complement couples the spots only
through γ. Each solver step warm-starts the Newton from the last step's prox points, which are a step away, so it
needs two or three Newton steps.

Why not a gradient step on φ (the Condat–Vũ solver these problems had until session 32): the fit is rank one per
spot, and its curvature caps a gradient step; on a real Visium section (DLPFC MBP, negative binomial, tuned penalties)
that solver had not converged after 20,000 iterations.
"""

from __future__ import annotations

import copy

import torch

from s3r.solver.datafit import SquaredLoss

NEWTON_MAX = 30  # γ's Newton steps per prox
GAMMA_NOISE = 1e3  # a γ step within this multiple of the floor that no longer halves is noise: γ stops
HALVINGS = 30
SPOT_MAX = 100  # the spots' safeguarded Newton steps (bisection halves a bracket: 100 reach any float)
STEP_CAP = 2.0  # the largest move of a prox point in one step, on the link scale (e² in μ)
# the largest move of a covariate in one Newton step, on the link scale: where the counts are sparse, h's curvature in γ
# (the spots' dσ/(d + σ)) vanishes as μ → 0 and a plain Newton step from a low start leapt 115 units (session 33)
GAMMA_STEP_CAP = 4.0


def _newton_step(H: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Each problem's covariate Newton step H⁻¹∇ (B, q), shrunk to at most GAMMA_STEP_CAP in its largest entry.

    The ridge has a floor that float32 holds (1e-32): where every μ underflows (a target without counts on a fold's
    training spots drives the intercept down without end) H is exactly 0, and a ridge relative to it was 0 too — the
    solve raised "singular" and ended a workflow fold job (session 33). A step that overflows is capped like any other."""
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    ridge = 1e-12 * torch.clamp(torch.diagonal(H, dim1=1, dim2=2).amax(-1), min=1e-20)
    step = torch.linalg.solve(H + ridge.view(-1, 1, 1) * eye, grad.unsqueeze(-1)).squeeze(-1)
    step = torch.nan_to_num(step, nan=0.0, posinf=1e30, neginf=-1e30)
    return step * torch.clamp(GAMMA_STEP_CAP / step.abs().amax(-1, keepdim=True).clamp_min(1e-300), max=1.0)


class GLMLoss(SquaredLoss):
    def __init__(self, X, y, weights, covariates, family, offset=None):
        super().__init__(X, y, weights, covariates)
        self.family = family
        self.off = offset  # (n, B) or None
        self._eta = None  # the last prox points (n, B) and covariates (B, q): the next prox's warm start
        self._gamma = None
        self._y_link = None  # made once: the solver reads it at every residual check

    def start_covariates(self, gamma: torch.Tensor) -> None:
        """Where the prox's covariates start (B, q): the solve's own start (the null model's), not 0."""
        self._gamma = gamma.clone()

    def _shifted(self, eta):
        return eta if self.off is None else eta + self.off

    @property
    def y_link(self) -> torch.Tensor:
        """The response on the prediction's scale (for the solver's magnitudes only): g(max(y, ½)) − offset,
        centred where an intercept absorbs the level."""
        if self._y_link is not None:
            return self._y_link
        t = self.family.link(torch.clamp(self.y, min=0.5))
        t = t if self.off is None else t - self.off
        if self.Z is not None:
            t = t - (self.o * t).sum(0) / torch.clamp(self.o.sum(0), min=1)
        self._y_link = t
        return t

    def curvature_scale(self) -> torch.Tensor:
        """(B,) a typical ∂²φ_i/∂ŷ² relative to the squared loss's (2c_i): the Fisher weight at the mean response."""
        mean = (self.o * self.y).sum(0) / torch.clamp(self.o.sum(0), min=1)
        return self.family.weight(mean, self.family.link(torch.clamp(mean, min=1e-3))).clamp_min(1e-6)

    def value(self, pred: torch.Tensor) -> torch.Tensor:
        return 2 * (self.c * self.family.loss(self.y, self._shifted(pred))).sum(0)

    def restrict(self, J: torch.Tensor) -> "GLMLoss":
        return GLMLoss(self.X[:, J].contiguous(), self.y, self.o, self.Z, self.family, self.off)

    def select(self, idx: torch.Tensor) -> "GLMLoss":
        new = copy.copy(self)
        new.y, new.o, new.c = (a.index_select(1, idx) for a in (self.y, self.o, self.c))
        new.off = None if self.off is None else self.off.index_select(1, idx)
        new.family = self.family.subset(idx)
        new._eta = None if self._eta is None else self._eta.index_select(1, idx)
        new._gamma = None if self._gamma is None else self._gamma.index_select(0, idx)
        new._y_link = None if self._y_link is None else self._y_link.index_select(1, idx)
        return new

    def dual_prox(self, a: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self._prox(a, sigma, eliminated=False)[0]

    def dual_prox_eliminated(self, a: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._prox(a, sigma, eliminated=True)

    def _prox(self, a, sigma, *, eliminated: bool):
        """The prox points η* and covariates γ* (module docstring), from the last ones; returns v = ∇φ(η*) and γ*.

        Nested: for fixed γ the spots are independent (:meth:`_spot_points`); γ then takes Newton steps on the convex
        h(γ) = min_η Ψ(η, γ), whose gradient is Zᵀv and Hessian Zᵀ diag(k) Z with k = dσ/(d + σ), backtracking on h.
        """
        sigma = sigma.expand_as(a)
        u = a / sigma
        Z = self.Z if eliminated else None
        B = a.shape[1]
        eta = self._eta.clone() if self._eta is not None and self._eta.shape == a.shape else u.clone()
        eps = torch.finfo(a.dtype).eps
        floor = max(1e-12, 8 * eps)
        if Z is None:
            eta, g, _ = self._spot_points(eta, u, sigma, floor)
            self._eta, self._gamma = eta, None
            return g, None
        q = Z.shape[1]
        warm = self._gamma is not None and self._gamma.shape == (B, q)
        gamma = self._gamma.clone() if warm else torch.zeros((B, q), dtype=a.dtype, device=a.device)

        def h_value(eta, gamma):
            r = eta - u - Z @ gamma.T
            return 2 * (self.c * self.family.nll(self.y, self._shifted(eta))).sum(0) + 0.5 * (sigma * r * r).sum(0)

        eta, g, d = self._spot_points(eta, u + Z @ gamma.T, sigma, floor)
        h0 = h_value(eta, gamma)
        active = torch.ones(B, dtype=torch.bool, device=a.device)
        last = torch.full((B,), float("inf"), dtype=a.dtype, device=a.device)
        for _ in range(NEWTON_MAX):
            k = d * sigma / (d + sigma)
            H = torch.einsum("nb,nq,nr->bqr", k, Z, Z)
            step = _newton_step(H, (Z.T @ g).T)  # (B, q)
            # below the floor, or near it and no longer shrinking (the noise of the prox points its gradient sums)
            size = (step.abs() / (floor * (1 + gamma.abs()))).amax(-1)
            active &= ~((size <= 1) | ((size <= GAMMA_NOISE) & (size > 0.5 * last)))
            last = size
            if not bool(active.any()):
                break
            # a decrease h cannot resolve in this precision (its sum's rounding): the full step, no line search
            unresolved = (step * (Z.T @ g).T).sum(-1) <= 100 * eps * h0.abs()
            t = torch.ones(B, dtype=a.dtype, device=a.device)
            for _ in range(HALVINGS):  # per problem until h does not rise
                cand = gamma - t.view(-1, 1) * step * active.view(-1, 1)
                eta1, g1, d1 = self._spot_points(eta, u + Z @ cand.T, sigma, floor)
                h1 = h_value(eta1, cand)
                bad = ~(h1 <= h0 + 8 * eps * h0.abs()) & active & ~unresolved
                if not bool(bad.any()):
                    break
                t = torch.where(bad, t / 2, t)
            take = (active & ~bad).view(1, -1)
            gamma = torch.where(take.view(-1, 1), cand, gamma)
            eta, g, d = torch.where(take, eta1, eta), torch.where(take, g1, g), torch.where(take, d1, d)
            h0 = torch.where(take.view(-1), h1, h0)
            active &= ~bad  # no decrease in HALVINGS halvings: γ is at this precision's optimum
            if not bool(active.any()):
                break
        self._eta, self._gamma = eta, gamma
        return g, gamma

    def _spot_points(self, eta, w, sigma, floor):
        """Per spot, the root of F(η) = 2c ℓ'(η + offset) + σ(η − w), increasing in η (F' = d + σ ≥ σ > 0):
        Newton steps capped at ``STEP_CAP`` and kept inside the bracket the signs of F have shown (bisection where
        a step leaves it), so the sigmoid-shaped ℓ' of the negative binomial cannot make it cycle or run away.
        Returns η, ∇φ(η) = 2cℓ' and the curvature d = 2cℓ''."""
        two_c = 2 * self.c
        lo = torch.full_like(eta, -float("inf"))
        hi = torch.full_like(eta, float("inf"))
        for _ in range(SPOT_MAX):
            shifted = self._shifted(eta)
            g, d = self.family.gradient_curvature(self.y, shifted)
            F = two_c * g + sigma * (eta - w)
            step = F / (two_c * d + sigma)
            moving = step.abs() > floor * (1 + eta.abs())  # a spot whose Newton step is below the floor stays
            if not bool(moving.any()):
                break
            lo = torch.where(F < 0, torch.maximum(lo, eta), lo)
            hi = torch.where(F > 0, torch.minimum(hi, eta), hi)
            cand = eta - torch.clamp(step, -STEP_CAP, STEP_CAP)
            outside = ((cand < lo) | (cand > hi)) & torch.isfinite(lo) & torch.isfinite(hi)
            eta = torch.where(moving, torch.where(outside, 0.5 * (lo + hi), cand), eta)
        g, d = self.family.gradient_curvature(self.y, self._shifted(eta))
        return eta, two_c * g, two_c * d

    def gradient(self, pred: torch.Tensor) -> torch.Tensor:
        """∇φ at the prediction ``pred`` (n, B): 2c ℓ'(pred + offset)."""
        return 2 * self.c * self.family.gradient(self.y, self._shifted(pred))

    def profile_covariates(self, W: torch.Tensor, gamma: torch.Tensor, max_newton: int = 50):
        """(γ*(W), the prediction MW + Zγ*) with γ*(W) = argmin_γ φ(MW + Zγ) by damped Newton (q is small), warm-started
        from ``gamma``: the covariates at their optimum given W, where the numerical-zero check takes the fit's gradient.

        Its line search compares φ without its terms in y alone (``Family.nll``), and each problem stops where its
        precision ends (in float32 a finer rule ran all 50 steps with 30 halvings each: 95 % of a count-family tuning
        fold before session 32, when this also served the solver's iterates)."""
        Z = self.Z
        base = self.predict_w(W)
        # below these a step cannot change γ or φ in this precision (float32: ~1e-7 of γ), so a problem stops there
        eps = torch.finfo(W.dtype).eps
        step_floor = max(1e-10, 4 * eps)
        nll = lambda pred: 2 * (self.c * self.family.nll(self.y, self._shifted(pred))).sum(0)  # noqa: E731
        pred = base + Z @ gamma.T
        f0 = nll(pred)
        active = torch.ones(gamma.shape[0], dtype=torch.bool, device=W.device)
        for _ in range(max_newton):
            grad = self.gradient(pred).T @ Z  # (B, q)
            H = torch.einsum("nb,nq,nr->bqr", 2 * self.c * self.family.weight(self.y, self._shifted(pred)), Z, Z)
            step = _newton_step(H, grad)
            active &= ~(step.abs() <= step_floor * (1 + gamma.abs())).all(-1)
            if not bool(active.any()):
                break
            # a decrease φ cannot resolve in this precision: the full Newton step, without a line search (φ is convex
            # in γ and the step is inside Newton's quadratic region)
            unresolved = (grad * step).sum(-1) <= 100 * eps * f0.abs()
            t = torch.ones(gamma.shape[0], dtype=W.dtype, device=W.device)
            for _ in range(HALVINGS):  # halve per problem until the value does not rise
                cand = gamma - t.view(-1, 1) * step
                f1 = nll(base + Z @ cand.T)
                bad = ~(f1 <= f0 + 1e-13 * f0.abs()) & active & ~unresolved
                if not bool(bad.any()):
                    break
                t = torch.where(bad, t / 2, t)
            keep = bad | ~active
            gamma = torch.where(keep.view(-1, 1), gamma, cand)
            f0 = torch.where(keep, f0, f1)
            active &= ~bad  # no decrease in HALVINGS halvings: γ is at this precision's optimum
            pred = base + Z @ gamma.T
            active &= ~((t.view(-1, 1) * step).abs() <= step_floor * (1 + gamma.abs())).all(-1)
            if not bool(active.any()):
                break
        return gamma, pred
