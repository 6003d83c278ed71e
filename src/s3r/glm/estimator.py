"""``GLMNet``: elastic-net GLMs over a λ path for many responses at once, with path cross-validation.

Objective per response b (scikit-learn's ElasticNet scaling for the gaussian, glmnet's for the rest):

    (1/Σw) Σ_i w_i d(y_ib, μ_ib)/2 + λ_b Σ_j f_j (l1_ratio |β_bj| + (1 − l1_ratio)/2 β_bj²),
    log μ_ib = b_b + x_iᵀβ_b + offset_ib   (μ = η for the gaussian)

f_j = 0 leaves feature j unpenalised (covariates: batch, library size, cell cycle). With ``standardize`` the
penalty applies to coefficients of unit-variance features (glmnet's default); ``coef_`` is always reported on
the original scale. The path starts at λ_max — the smallest λ at which every penalised coefficient is zero,
from the score at the fit of intercept and unpenalised features — per response, and is warm-started.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from s3r.errors import S3RInputError
from s3r.validation import finite_matrix
from s3r.glm import solver as S
from s3r.glm.families import NegativeBinomial, estimate_theta, get_family, pearson_dispersion
from s3r.glm.metrics import glm_scores, null_eta
from s3r.solver.device import cpu_threads, resolve_device, resolve_dtype


def _matrix(X, name: str) -> np.ndarray:
    return finite_matrix(X, name, allow_vector=True)


class GLMNet:
    """Elastic-net GLM (gaussian, poisson, negative_binomial, gamma), batched over responses.

    ``alpha``: one λ (skip the path); else a path of ``n_alphas`` values from λ_max to ``eps``·λ_max (or the given
    ``alphas``). ``cv``: folds for path cross-validation by held-out deviance (``selection`` "min" or "1se");
    without CV and without ``alpha`` the least-penalised path point is kept. ``theta``: NB θ, or None to
    estimate it per response. Learned: ``coef_`` (B, p) or (p,), ``intercept_``, ``alphas_`` (K, B),
    ``coef_path_`` (K, B, p), ``intercept_path_``, ``deviance_path_``/``deviance_explained_path_`` (training),
    ``cv_deviance_``/``cv_deviance_se_`` (K, B), ``alpha_index_`` and ``alpha_`` (B,), ``theta_`` (NB),
    ``dispersion_`` (gamma: Pearson χ²/df; gaussian: residual variance), ``report_``.
    """

    def __init__(
        self,
        family: str = "gaussian",
        *,
        l1_ratio: float = 0.5,
        alpha: float | None = None,
        alphas=None,
        n_alphas: int = 100,
        eps: float = 1e-3,
        cv: int | None = None,
        selection: str = "min",
        penalty_factor=None,
        fit_intercept: bool = True,
        standardize: bool = True,
        theta: float | None = None,
        tol: float = 1e-6,
        max_iter: int = 50,
        max_sweeps: int = 5000,
        random_state: int = 0,
        device: str = "auto",
        dtype: str = "float64",
    ):
        self.family = family
        self.l1_ratio = l1_ratio
        self.alpha = alpha
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.selection = selection
        self.penalty_factor = penalty_factor
        self.fit_intercept = fit_intercept
        self.standardize = standardize
        self.theta = theta
        self.tol = tol
        self.max_iter = max_iter
        self.max_sweeps = max_sweeps
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    def get_params(self, deep=True):
        code = self.__init__.__code__
        return {k: getattr(self, k) for k in code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown parameter {k!r} for GLMNet")
            setattr(self, k, v)
        return self

    # -- input ------------------------------------------------------------------------------------------
    def _check(self, X, Y, offset, sample_weight):
        if not 0 <= self.l1_ratio <= 1:
            raise S3RInputError(f"l1_ratio must lie in [0, 1]; got {self.l1_ratio}")
        if self.selection not in ("min", "1se"):
            raise S3RInputError("selection must be 'min' or '1se'")
        X = _matrix(X, "X")
        n, p = X.shape
        Y = np.asarray(Y, dtype=np.float64)
        self._one = Y.ndim == 1
        Y = _matrix(Y, "Y")
        if Y.shape[0] != n:
            raise S3RInputError(f"Y has {Y.shape[0]} rows but X has {n}; they must describe the same cells/spots")
        off = None if offset is None else _matrix(np.asarray(offset, dtype=np.float64).reshape(n, -1), "offset")
        if off is not None and off.shape[1] not in (1, Y.shape[1]):
            raise S3RInputError(f"offset must be (n,) or (n, {Y.shape[1]}); got {off.shape}")
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if w.shape[0] != n or np.any(w < 0) or not np.all(np.isfinite(w)) or w.sum() <= 0:
            raise S3RInputError("sample_weight needs n finite values ≥ 0 with a positive sum")
        pf = np.ones(p) if self.penalty_factor is None else np.asarray(self.penalty_factor, dtype=np.float64).reshape(-1)
        if pf.shape[0] != p or np.any(pf < 0) or not np.all(np.isfinite(pf)):
            raise S3RInputError(f"penalty_factor needs {p} finite values ≥ 0 (one per feature); got {pf.shape[0]}")
        fam = get_family(self.family, self.theta)
        fam.check_response(torch.as_tensor(Y), "Y")
        return X, Y, off, w, pf, fam

    def _problem(self, X, Y, off, w, pf, fam, dev, dt):
        """Centre (and scale) features with the fit's own weights; returns the solver problem and the scaling."""
        wn = w / w.sum()
        mean = wn @ X if self.fit_intercept else np.zeros(X.shape[1])
        sd = np.sqrt(wn @ (X - mean) ** 2) if self.standardize else np.ones(X.shape[1])
        sd = np.where(sd > 1e-12 * max(1.0, float(np.abs(X).max(initial=0.0))), sd, 1.0)
        Xs = (X - mean) / sd
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)  # noqa: E731
        Xa = torch.cat([torch.ones((X.shape[0], 1), dtype=dt, device=dev), t(Xs)], 1)
        pft = torch.cat([torch.zeros(1, dtype=dt, device=dev), t(pf)])
        P = S.Problem(Xa, t(Y), t(wn), None if off is None else t(off), fam, pft, self.fit_intercept)
        return P, mean, sd

    # -- fitting ------------------------------------------------------------------------------------------
    def fit(self, X, Y, *, offset=None, sample_weight=None):
        start = time.perf_counter()
        X, Y, off, w, pf, fam = self._check(X, Y, offset, sample_weight)
        dev, dt = resolve_device(self.device), resolve_dtype(self.dtype)
        n, p = X.shape
        B = Y.shape[1]
        fam0 = fam
        lam_grid = None
        if self.alpha is not None:
            if not self.alpha >= 0:
                raise S3RInputError(f"alpha must be ≥ 0; got {self.alpha}")
            lam_grid = np.full((1, B), float(self.alpha))
        elif self.alphas is not None:
            a = np.sort(np.asarray(self.alphas, dtype=np.float64).reshape(-1))[::-1]
            if np.any(a < 0):
                raise S3RInputError("alphas must be ≥ 0")
            lam_grid = np.repeat(a[:, None], B, axis=1)
        with cpu_threads(dev, n * B * 4):
            path = self._fit_path(X, Y, off, w, pf, fam, dev, dt, lam_grid)
        self.alphas_ = path["lam"]
        self.coef_path_ = path["coef"]
        self.intercept_path_ = path["intercept"]
        self.deviance_path_ = path["deviance"]
        self.deviance_explained_path_ = path["d2"]
        self.objective_path_ = path["objective"]
        self.n_nonzero_path_ = (self.coef_path_ != 0).sum(-1) if p else np.zeros_like(self.alphas_, dtype=int)
        K = self.alphas_.shape[0]
        if self.cv and K > 1:
            with cpu_threads(dev, n * B * 4):
                self._cross_validate(X, Y, off, w, pf, fam0, dev, dt)
        else:
            self.cv_deviance_ = self.cv_deviance_se_ = None
            self.alpha_index_ = np.full(B, K - 1, dtype=np.int64)
        cols = np.arange(B)
        self.alpha_ = self.alphas_[self.alpha_index_, cols]
        coef = self.coef_path_[self.alpha_index_, cols]
        icpt = self.intercept_path_[self.alpha_index_, cols]
        self.theta_ = path["theta"][self.alpha_index_, cols] if path["theta"] is not None else None
        self.dispersion_ = path["dispersion"][self.alpha_index_, cols]
        self.coef_ = coef[0] if self._one else coef
        self.intercept_ = float(icpt[0]) if self._one else icpt
        self.n_features_in_ = p
        self.family_ = fam.name
        self.report_ = {
            "family": fam.name, "n_samples": int(n), "n_features": int(p), "n_responses": int(B), "n_alphas": int(K),
            "l1_ratio": float(self.l1_ratio), "converged": bool(path["converged"].all()),
            "newton_iterations": int(path["iterations"].sum()), "cd_sweeps": int(path["sweeps"]),
            "seconds": time.perf_counter() - start, "device": str(dev), "dtype": str(dt).replace("torch.", ""),
            "cv_folds": int(self.cv or 0),
        }
        return self

    def _fit_path(self, X, Y, off, w, pf, fam, dev, dt, lam_grid):
        P, mean, sd = self._problem(X, Y, off, w, pf, fam, dev, dt)
        B, q = P.B, P.Xa.shape[1]
        a = float(self.l1_ratio)
        pft = P.pf
        nb_est = isinstance(fam, NegativeBinomial) and not fam.fixed
        theta = None
        if nb_est:
            theta = torch.full((B,), 10.0, dtype=dt, device=dev)
            fam.set_theta(theta)
        # null fit: intercept and unpenalised features only
        U = torch.zeros((B, q), dtype=dt, device=dev)
        if fam.name != "gaussian":
            ybar = (P.w.unsqueeze(1) * P.Y).sum(0)
            U[:, 0] = torch.log(torch.clamp(ybar, min=1e-12))
            if P.offset is not None:
                U[:, 0] -= (P.w.unsqueeze(1) * P.offset).sum(0)
        unpen = pft == 0
        zero = torch.zeros(B, dtype=dt, device=dev)
        one = torch.ones(B, dtype=dt, device=dev)
        U, info = self._solve(P, zero, a, U, unpen, one, theta, nb_est)
        theta = info.get("theta", theta)
        scale = torch.clamp(info["fit"], min=1e-12)
        eta = P.eta(U)
        grad = (P.family.gradient(P.Y, eta) * P.w.unsqueeze(1)).T @ P.Xa  # (B, q)
        ws = P.w.unsqueeze(1)
        null_dev = (ws * P.family.deviance(P.Y, P.family.mean(null_eta(P.family, P.Y, P.w, P.offset)))).sum(0)
        if lam_grid is None:
            ratio = torch.where(pft > 0, grad.abs() / (max(a, 1e-3) * torch.clamp(pft, min=1e-300)), torch.zeros_like(grad))
            lmax = ratio.max(1).values.double().cpu().numpy() if q > 1 else np.zeros(B)
            lmax = np.where(lmax > 0, lmax * (1 + 1e-9), 1.0)  # rounding must not let the first coefficient in
            lam_grid = lmax[None, :] * np.geomspace(1.0, self.eps, self.n_alphas)[:, None]
        K = lam_grid.shape[0]
        coef = np.zeros((K, B, q - 1))
        icpt = np.zeros((K, B))
        objective = np.zeros((K, B))
        devs = np.zeros((K, B))
        d2 = np.zeros((K, B))
        disp = np.zeros((K, B))
        thetas = np.zeros((K, B)) if nb_est or isinstance(fam, NegativeBinomial) else None
        iters = np.zeros((K, B), dtype=np.int64)
        conv = np.zeros((K, B), dtype=bool)
        sweeps = 0
        for k in range(K):
            lam = torch.as_tensor(lam_grid[k], dtype=dt, device=dev)
            U, info = self._solve(P, lam, a, U, None, scale, theta, nb_est)
            theta = info.get("theta", theta)
            Uc = U.double().cpu().numpy()
            beta = Uc[:, 1:] / sd
            coef[k] = beta
            icpt[k] = Uc[:, 0] - beta @ mean
            objective[k] = info["objective"].double().cpu().numpy()
            iters[k] = info["iterations"].cpu().numpy()
            conv[k] = info["converged"].cpu().numpy()
            sweeps += info["sweeps"]
            if nb_est:  # deviance depends on θ, so the null model is re-scored with the current θ
                null_dev = (ws * P.family.deviance(P.Y, P.family.mean(null_eta(P.family, P.Y, P.w, P.offset)))).sum(0)
            dvk = 2 * info["fit"]  # the fit is half the weighted mean deviance (gaussian: from the Gram, no n × B pass)
            devs[k] = dvk.double().cpu().numpy()
            d2[k] = (1 - dvk / torch.clamp(null_dev, min=1e-300)).double().cpu().numpy()
            df = max(1.0, float(P.Y.shape[0]) - float(np.mean((beta != 0).sum(1))) - 1)
            if fam.name == "gamma":
                mu = P.family.mean(info["eta"])
                disp[k] = pearson_dispersion(P.Y, mu, P.w * P.Y.shape[0], df).double().cpu().numpy()
            elif fam.name == "gaussian":
                disp[k] = devs[k] * P.Y.shape[0] / df
            else:
                disp[k] = 1.0
            if thetas is not None:
                thetas[k] = (theta if theta is not None else torch.full((B,), float(fam.theta))).double().cpu().numpy()
        self._mean, self._sd = mean, sd
        return {"lam": lam_grid, "coef": coef, "intercept": icpt, "objective": objective, "deviance": devs, "d2": d2,
                "theta": thetas, "dispersion": disp, "iterations": iters, "converged": conv, "sweeps": sweeps}

    def _solve(self, P, lam, a, U, free_mask, scale, theta, nb_est):
        """One path point; for NB with θ estimated, alternate β | θ and θ | μ (a few rounds, warm)."""
        free = None
        if free_mask is not None:
            free = free_mask.clone()
            free[0] = True
        rounds = 8 if nb_est else 1
        info = {}
        for _ in range(rounds):
            U, info = S.solve(P, lam, a, U, free=free, scale=scale, tol=self.tol, max_outer=self.max_iter, max_sweeps=self.max_sweeps)
            if not nb_est:
                break
            mu = P.family.mean(P.eta(U))
            new = estimate_theta(P.Y, mu, P.w.unsqueeze(1) * P.Y.shape[0], theta)
            change = float(((new - theta).abs() / theta).max())
            theta = new
            P.family.set_theta(theta)
            info["theta"] = theta
            if change < 1e-6:
                break
        if nb_est:
            U, info2 = S.solve(P, lam, a, U, free=free, scale=scale, tol=self.tol, max_outer=self.max_iter, max_sweeps=self.max_sweeps)
            info2["theta"] = theta
            info = info2
        return U, info

    def _cross_validate(self, X, Y, off, w, pf, fam, dev, dt):
        """K-fold CV on the full-data λ grid; held-out loss is the mean deviance (θ re-estimated per fold)."""
        n, B = Y.shape
        K = self.alphas_.shape[0]
        folds = int(self.cv)
        if folds < 2 or folds > n:
            raise S3RInputError(f"cv must be between 2 and the number of samples ({n}); got {folds}")
        rng = np.random.default_rng(self.random_state)
        fold_of = rng.permutation(np.arange(n) % folds)
        losses = np.zeros((folds, K, B))
        sizes = np.zeros(folds)
        for f in range(folds):
            tr, te = fold_of != f, fold_of == f
            famf = get_family(self.family, self.theta)
            offtr = None if off is None else off[tr]
            path = self._fit_path(X[tr], Y[tr], offtr, w[tr], pf, famf, dev, dt, self.alphas_)
            eta = path["intercept"][:, None, :] + np.einsum("np,kbp->knb", X[te], path["coef"])
            if off is not None:
                eta = eta + off[te][None]
            Yt = torch.as_tensor(Y[te], dtype=torch.float64)
            wt = torch.as_tensor(w[te], dtype=torch.float64)
            for k in range(K):
                if path["theta"] is not None:
                    famf.set_theta(torch.as_tensor(path["theta"][k], dtype=torch.float64))
                mu = famf.mean(torch.as_tensor(eta[k], dtype=torch.float64))
                losses[f, k] = ((wt.unsqueeze(1) * famf.deviance(Yt, mu)).sum(0) / wt.sum()).numpy()
            sizes[f] = w[te].sum()
        wf = sizes / sizes.sum()
        mean = np.einsum("f,fkb->kb", wf, losses)
        se = np.sqrt(np.einsum("f,fkb->kb", wf, (losses - mean) ** 2) / max(folds - 1, 1))
        self.cv_deviance_, self.cv_deviance_se_ = mean, se
        best = np.argmin(mean, axis=0)
        if self.selection == "1se":
            cols = np.arange(B)
            limit = mean[best, cols] + se[best, cols]
            best = np.argmax(mean <= limit[None, :], axis=0)  # the largest λ (first index) within one SE
        self.alpha_index_ = best.astype(np.int64)

    # -- prediction and scores -------------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise S3RInputError("this GLMNet model is not fitted yet; call fit() first")

    def linear_predictor(self, X, offset=None) -> np.ndarray:
        self._check_fitted()
        X = _matrix(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise S3RInputError(f"X has {X.shape[1]} features but the model was fitted on {self.n_features_in_}")
        coef = np.atleast_2d(self.coef_)
        eta = X @ coef.T + np.atleast_1d(self.intercept_)[None, :]
        if offset is not None:
            eta = eta + np.asarray(offset, dtype=np.float64).reshape(X.shape[0], -1)
        return eta[:, 0] if self._one else eta

    def predict(self, X, offset=None) -> np.ndarray:
        """Expected response μ (counts for count families: pass the same kind of offset as in fit)."""
        eta = self.linear_predictor(X, offset)
        return eta if self.family_ == "gaussian" else np.exp(np.minimum(eta, 30.0))

    def _family_at_fit(self):
        fam = get_family(self.family, self.theta)
        if isinstance(fam, NegativeBinomial):
            fam.set_theta(torch.as_tensor(np.atleast_1d(self.theta_), dtype=torch.float64))
        return fam

    def scores(self, X, Y, offset=None, sample_weight=None) -> dict:
        """Per-response deviance, null deviance, deviance explained and pseudo-R² (arrays, or floats for 1-D Y)."""
        eta = np.asarray(self.linear_predictor(X, offset)).reshape(np.asarray(X).shape[0], -1)
        n = eta.shape[0]
        Yt = torch.as_tensor(np.asarray(Y, dtype=np.float64).reshape(n, -1))
        w = torch.as_tensor(np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64))
        off = None if offset is None else torch.as_tensor(np.asarray(offset, dtype=np.float64).reshape(n, -1))
        fam = self._family_at_fit()
        kw = {"dispersion": torch.as_tensor(np.atleast_1d(self.dispersion_))} if fam.name == "gamma" else {}
        sc = glm_scores(fam, Yt, torch.as_tensor(eta), w, off, **kw)
        out = {k: v.numpy() for k, v in sc.items()}
        return {k: float(v[0]) for k, v in out.items()} if self._one else out

    def score(self, X, Y, offset=None, sample_weight=None) -> float:
        """Deviance explained D² (R² for the gaussian), averaged over responses."""
        return float(np.mean(self.scores(X, Y, offset, sample_weight)["deviance_explained"]))


ElasticNetGLM = GLMNet
