"""Exponential-family data fits with log links (identity for gaussian), as functions of the linear predictor.

Every fit is written as half the unit deviance, ℓ(y, η) = d(y, μ)/2 with μ = g⁻¹(η + offset): it is ≥ 0,
zero at the saturated model, equals ½(y − η)² for the gaussian (so the penalised objective has scikit-learn's
ElasticNet scaling), and has the maximum-likelihood minimiser for every family. Solvers only need ℓ, ∂ℓ/∂η
and a positive curvature weight (the Fisher information, which keeps IRLS weights positive for NB and gamma).
All methods take torch tensors and broadcast, so responses can sit on a batch axis.
"""

from __future__ import annotations

import math

import torch

from s3r.errors import S3RInputError

ETA_MAX = 30.0  # exp(30) ≈ 1e13 counts: beyond any real library; stops overflow on wild trial steps


def _xlogy_ratio(y: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """y log(y/μ) with 0 log 0 = 0."""
    return torch.where(y > 0, y * (torch.log(torch.clamp(y, min=1e-300)) - torch.log(mu)), torch.zeros_like(mu))


class Family:
    name = "family"
    canonical_count = False

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.clamp(eta, max=ETA_MAX))

    def link(self, mu):
        return torch.log(mu)

    def loss(self, y, eta):  # half unit deviance
        return 0.5 * self.deviance(y, self.mean(eta))

    def nll(self, y, eta):
        """ℓ up to a term in y alone (cheaper: no y log y), for comparisons at fixed y."""
        return self.loss(y, eta)

    def deviance(self, y, mu):
        raise NotImplementedError

    def gradient(self, y, eta):
        """∂ℓ/∂η."""
        raise NotImplementedError

    def weight(self, y, eta):
        """Fisher curvature E[∂²ℓ/∂η²] (> 0), the IRLS weight and the local Lipschitz factor."""
        raise NotImplementedError

    def curvature(self, y, eta):
        """Observed curvature ∂²ℓ/∂η² (≥ 0): exact Newton steps on ℓ (the spatial solver's per-spot prox); equal to
        the Fisher weight for canonical links."""
        return self.weight(y, eta)

    def gradient_curvature(self, y, eta):
        """(∂ℓ/∂η, ∂²ℓ/∂η²) together (μ once where the family allows)."""
        return self.gradient(y, eta), self.curvature(y, eta)

    def loglik(self, y, mu):
        """Full log-likelihood per observation (for pseudo-R² and statsmodels comparisons)."""
        raise NotImplementedError

    def gradient_weight(self, y, eta):
        """(∂ℓ/∂η, Fisher weight) together: families with a log link compute μ = exp(η) once for both."""
        return self.gradient(y, eta), self.weight(y, eta)

    def check_response(self, y, where: str = "response") -> None:
        pass

    def subset(self, idx) -> "Family":
        """The family for a subset of response columns (only NB carries per-response parameters)."""
        return self

    def params(self) -> dict:
        return {"family": self.name}


class Gaussian(Family):
    name = "gaussian"

    def mean(self, eta):
        return eta

    def link(self, mu):
        return mu

    def deviance(self, y, mu):
        return (y - mu) ** 2

    def gradient(self, y, eta):
        return eta - y

    def weight(self, y, eta):
        return torch.ones_like(eta)

    def loglik(self, y, mu, scale=None):
        r2 = (y - mu) ** 2
        s2 = r2.mean(0, keepdim=True) if scale is None else torch.as_tensor(scale, dtype=mu.dtype)
        return -0.5 * (r2 / s2 + torch.log(2 * math.pi * s2))


class Poisson(Family):
    name = "poisson"

    def deviance(self, y, mu):
        return 2 * (_xlogy_ratio(y, mu) - (y - mu))

    def nll(self, y, eta):
        # beyond ETA_MAX, where the mean is held, the value goes on rising with the slope the gradient reports
        # (μ_max − y): a held μ with the term −yη alone fell without bound there, and a line search on it
        # accepted steps into that region (session 33)
        return self.mean(eta) * (1 + torch.clamp(eta - ETA_MAX, min=0)) - y * eta

    def gradient(self, y, eta):
        return self.mean(eta) - y

    def weight(self, y, eta):
        return self.mean(eta)

    def loglik(self, y, mu):
        return y * torch.log(mu) - mu - torch.lgamma(y + 1)

    def gradient_weight(self, y, eta):
        mu = self.mean(eta)
        return mu - y, mu

    def gradient_curvature(self, y, eta):
        return self.gradient_weight(y, eta)  # canonical link: the observed curvature is the Fisher weight

    def check_response(self, y, where="response"):
        _check_nonneg(y, where, self.name)


class NegativeBinomial(Family):
    """NB2: Var = μ + μ²/θ. ``theta=None`` means θ is estimated per response (see :func:`estimate_theta`)."""

    name = "negative_binomial"

    def __init__(self, theta: float | None = None):
        if theta is not None and not theta > 0:
            raise S3RInputError(f"negative binomial theta must be > 0; got {theta}")
        self.theta = theta
        self.fixed = theta is not None
        self._theta_t = None if theta is None else float(theta)

    def set_theta(self, theta) -> None:
        self._theta_t = theta  # float or (B,) tensor

    def subset(self, idx):
        if idx is None or not torch.is_tensor(self._theta_t) or self._theta_t.dim() == 0:
            return self
        fam = NegativeBinomial(self.theta)
        fam.fixed = self.fixed
        fam.set_theta(self._theta_t[idx])
        return fam

    def _th(self, like):
        th = self._theta_t if self._theta_t is not None else 1.0
        return torch.as_tensor(th, dtype=like.dtype, device=like.device)

    def deviance(self, y, mu):
        th = self._th(mu)
        return 2 * (_xlogy_ratio(y, mu) - (y + th) * (torch.log(y + th) - torch.log(mu + th)))

    # ℓ and its derivatives in η through s = μ/(μ + θ) = sigmoid(η − log θ) and log(μ + θ) = logaddexp(η, log θ):
    # exact at every η, without overflow, so no clamp of μ enters them. With μ held at ETA_MAX, the value (the term
    # −yη) fell without bound beyond it while the gradient stayed positive, and the prox's line search on the
    # intercept accepted a step to η ≈ 100 on a real section (DLPFC PCP4, session 33).
    def _s(self, eta):
        """(μ/(μ + θ), θ/(μ + θ), θ), each sigmoid on its own side (1 − s loses its digits where s ≈ 1)."""
        th = self._th(eta)
        d = eta - torch.log(th)
        return torch.sigmoid(d), torch.sigmoid(-d), th

    def nll(self, y, eta):
        th = self._th(eta)
        return (y + th) * torch.logaddexp(eta, torch.log(th)) - y * eta

    def gradient(self, y, eta):
        s, r, th = self._s(eta)
        return th * s - y * r  # θ(μ − y)/(μ + θ)

    def weight(self, y, eta):
        s, _, th = self._s(eta)
        return th * s  # θμ/(μ + θ)

    def gradient_weight(self, y, eta):
        s, r, th = self._s(eta)
        return th * s - y * r, th * s

    def curvature(self, y, eta):
        s, r, th = self._s(eta)
        return s * r * (y + th)  # θμ(y + θ)/(μ + θ)²

    def gradient_curvature(self, y, eta):
        s, r, th = self._s(eta)
        return th * s - y * r, s * r * (y + th)

    def loglik(self, y, mu):
        th = self._th(mu)
        return (
            torch.lgamma(y + th) - torch.lgamma(th) - torch.lgamma(y + 1)
            + th * (torch.log(th) - torch.log(th + mu)) + y * (torch.log(mu) - torch.log(th + mu))
        )

    def check_response(self, y, where="response"):
        _check_nonneg(y, where, self.name)

    def params(self):
        return {"family": self.name, "theta": self.theta}


class Gamma(Family):
    """Gamma with log link; the dispersion does not move the coefficients and is reported (Pearson χ²/df)."""

    name = "gamma"

    def deviance(self, y, mu):
        r = y / mu
        return 2 * (r - 1 - torch.log(torch.clamp(r, min=1e-300)))

    @staticmethod
    def _inverse_mean(eta):
        """1/μ, held below −ETA_MAX (where it would overflow)."""
        return torch.exp(-torch.clamp(eta, min=-ETA_MAX))

    def nll(self, y, eta):
        # below −ETA_MAX, where y/μ is held, the value goes on rising with the slope the gradient reports (as Poisson's
        # beyond ETA_MAX): η alone fell without bound there
        return eta + y * self._inverse_mean(eta) * (1 + torch.clamp(-ETA_MAX - eta, min=0))

    def gradient(self, y, eta):
        return 1 - y * self._inverse_mean(eta)

    def weight(self, y, eta):
        return torch.ones_like(eta)

    def curvature(self, y, eta):
        return y * self._inverse_mean(eta)

    def loglik(self, y, mu, dispersion=1.0):
        k = 1.0 / torch.as_tensor(dispersion, dtype=mu.dtype)
        return k * torch.log(k * y / mu) - k * y / mu - torch.log(y) - torch.lgamma(k)

    def check_response(self, y, where="response"):
        if bool((y <= 0).any()):
            raise S3RInputError(f"{where}: the gamma family needs strictly positive responses; found values ≤ 0 (use poisson or negative_binomial for counts)")


FAMILIES = ("gaussian", "poisson", "negative_binomial", "gamma")


def get_family(family, theta: float | None = None) -> Family:
    if isinstance(family, Family):
        return family
    name = str(family).lower().replace("-", "_")
    if name in ("nb", "negbin", "neg_binomial"):
        name = "negative_binomial"
    if name == "gaussian":
        return Gaussian()
    if name == "poisson":
        return Poisson()
    if name == "negative_binomial":
        return NegativeBinomial(theta)
    if name == "gamma":
        return Gamma()
    raise S3RInputError(f"unknown family {family!r}; use one of {', '.join(FAMILIES)}")


def _check_nonneg(y, where, name):
    if bool((y < 0).any()):
        raise S3RInputError(f"{where}: the {name} family needs non-negative counts; found negative values")


def estimate_theta(y: torch.Tensor, mu: torch.Tensor, w: torch.Tensor, theta0: torch.Tensor, n_iter: int = 25,
                   tol: float = 1e-8) -> torch.Tensor:
    """ML estimate of θ per response (column) given μ, by Newton on log θ (stays positive, no step tuning).

    Score and curvature of Σ w ℓ_NB in θ use digamma/trigamma; the log parameterisation makes the update
    scale-free, which matters because θ ranges from 0.1 (overdispersed) to 1e4 (nearly Poisson). A column leaves
    the iteration once its log θ moves by less than ``tol``, or sits at a bound of [1e-4, 1e6] (a gene without
    overdispersion has no finite θ: its steps never shrink). Stopping only when every column's *step* was small ran
    all ``n_iter`` iterations whenever one gene sat at 1e6 — on the real ECCITE screen (20,729 cells × 299 genes, 6
    genes at the bound) 24 s a call, called at every λ and round of the path (benchmarks/README.md, session 30).
    """
    lo, hi = math.log(1e-4), math.log(1e6)
    lt = torch.log(torch.clamp(theta0, 1e-4, 1e6))
    n_cols = lt.numel()
    active = torch.arange(n_cols, device=lt.device)
    # the digamma and trigamma terms vanish where y = 0 (ψ(0 + θ) − ψ(θ)), so they are summed over the non-zero
    # counts only: sparse screens hold 10–30 % non-zero entries, and these were the dearest terms of the iteration
    rows, cols = torch.nonzero(y > 0, as_tuple=True)
    y_nz = y[rows, cols]
    w_nz = w.expand_as(y)[rows, cols] if w.dim() == 2 else w[rows]
    for _ in range(n_iter):
        every = active.numel() == n_cols  # no column copies until a gene has left
        ya, ma = (y, mu) if every else (y[:, active], mu[:, active])
        wa = w if every or w.dim() < 2 or w.shape[1] == 1 else w[:, active]
        th = torch.exp(lt[active])
        # per cell, without cancellation when θ ≫ μ (a nearly Poisson gene: its θ must still be resolved to the last
        # digits, or the θ–β rounds of the path never settle): log θ + 1 − log(θ + μ) − (y + θ)/(θ + μ)
        # = −log1p(μ/θ) + (μ − y)/(θ + μ), and 1/θ − 2/(θ + μ) + (y + θ)/(θ + μ)² = (μ²/θ + y)/(θ + μ)²
        r = torch.reciprocal(th + ma)
        m = ma / th
        s = (wa * ((ma - ya) * r - torch.log1p(m))).sum(0)
        h = (wa * ((ma * m + ya) * r * r)).sum(0)
        keep = slice(None) if every else torch.isin(cols, active)
        c, yk, wk = cols[keep], y_nz[keep], w_nz[keep]
        tk = torch.exp(lt)[c]
        terms = torch.stack([torch.digamma(yk + tk) - torch.digamma(tk), torch.polygamma(1, yk + tk) - torch.polygamma(1, tk)], 1)
        sums = torch.zeros((n_cols, 2), dtype=s.dtype, device=s.device).index_add_(0, c, wk[:, None] * terms)[active]
        s, h = s + sums[:, 0], h + sums[:, 1]
        # d/dlogθ: g = θ s, H = θ² h + θ s; maximise, so step = −g/H when H < 0, else a fixed ascent move
        g = th * s
        H = th * th * h + g
        step = torch.where(H < 0, -g / H, torch.sign(g) * 0.5)
        new = torch.clamp(lt[active] + torch.clamp(step, -2, 2), lo, hi)
        moving = (new - lt[active]).abs() >= tol
        lt[active] = new
        active = active[moving]
        if active.numel() == 0:
            break
    return torch.exp(lt)


def pearson_dispersion(y, mu, w, df_resid):
    """Gamma dispersion φ = Σ w (y − μ)²/μ² / (n − df): the moment estimate statsmodels reports as ``scale``."""
    w = w.unsqueeze(1) if w.dim() == 1 else w
    return (w * ((y - mu) / mu) ** 2).sum(0) / torch.clamp(torch.as_tensor(df_resid, dtype=mu.dtype), min=1.0)
