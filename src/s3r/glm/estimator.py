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
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from s3r.errors import S3RInputError
from s3r.validation import finite_matrix
from s3r.glm import solver as S
from s3r.glm.data import check_fit_inputs, gaussian_dev, gram_stats, onehot_structure, response_blocks, sparse_responses, tikhonov_gram
from s3r.glm.exposure import PoissonSums
from s3r.glm.families import NegativeBinomial, estimate_theta, get_family, pearson_dispersion
from s3r.glm.metrics import glm_scores, null_eta
from s3r.glm.path_cv import cross_validate
from s3r.glm.progress import PathProgress
from s3r.solver.device import cpu_threads, resolve_device, resolve_dtype


def _matrix(X, name: str) -> np.ndarray:
    return finite_matrix(X, name, allow_vector=True)


class GLMNet(BaseEstimator):
    """Elastic-net GLM (gaussian, poisson, negative_binomial, gamma), batched over responses.

    ``alpha``: one λ (skip the path); else a path of ``n_alphas`` values from λ_max to ``eps``·λ_max (or the given
    ``alphas``). ``cv``: folds for path cross-validation by held-out deviance (``selection`` "min" or "1se");
    without CV and without ``alpha`` the least-penalised path point is kept. ``theta``: NB θ, or None to
    estimate it per response. Learned: ``coef_`` (B, p) or (p,), ``intercept_``, ``alphas_`` (K, B),
    ``coef_path_`` (K, B, p), ``intercept_path_``, ``deviance_path_``/``deviance_explained_path_`` (training),
    ``cv_deviance_``/``cv_deviance_se_`` (K, B), ``alpha_index_`` and ``alpha_`` (B,), ``theta_`` (NB),
    ``dispersion_`` (gamma: Pearson χ²/df; gaussian: residual variance), ``report_``.

    ``Tau`` (m, p): a Tikhonov matrix (spateo's name): the ridge part of the penalty becomes ½(1 − l1_ratio) λ ‖Tau β‖²
    (on the coefficients the penalty sees: standardised ones with ``standardize``) and ``penalty_factor`` weights
    the lasso part only; Tau = diag(√f) is the default penalty. Columns of unpenalised features must be zero. Cheap
    here: the ridge joins each Newton step's quadratic model (per-response q × q Hessians), so every family has it.
    ``progress``: a callable taking one line of text (``print``), told where a long fit stands (:mod:`s3r.glm.progress`).
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
        batch_size: int | None = None,
        score_metric: str | None = None,
        Tau=None,
        progress=None,
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
        self.batch_size = batch_size
        self.score_metric = score_metric
        self.Tau = Tau
        self.progress = progress

    # -- input ------------------------------------------------------------------------------------------
    def _check(self, X, Y, offset, sample_weight):
        X, Y, off, w, pf, fam, self._one = check_fit_inputs(self, X, Y, offset, sample_weight)
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
        if fam.name == "gaussian":  # the Gram statistics are the whole problem: Y (sparse or dense) is not copied
            P = S.Problem(Xa, None, t(wn), None, fam, pft, self.fit_intercept)
            H, c, yy = gram_stats(np.c_[np.ones(X.shape[0]), Xs], Y, wn, off)
            P._gram = (t(H), t(c), t(yy))
            P.n_responses = c.shape[0]
        else:
            P = S.Problem(Xa, t(Y), t(wn), None if off is None else t(off), fam, pft, self.fit_intercept)
            if fam.name == "poisson" and PoissonSums.applies(X, off):
                P.sums = PoissonSums(X, mean, sd, wn, None if off is None else off.reshape(-1), Y, dt, dev)
            else:
                P.structure = onehot_structure(X, mean, sd, dev, dt)
        P.tikhonov = None if self.Tau is None else tikhonov_gram(self.Tau, pf, dt, dev)
        return P, mean, sd

    # -- fitting ------------------------------------------------------------------------------------------
    def fit(self, X, Y, *, offset=None, sample_weight=None):
        return self._fit(X, Y, offset, sample_weight, PathProgress(self.progress))

    def _fit(self, X, Y, offset, sample_weight, progress: PathProgress):  # a block of responses reports to its parent's
        start = time.perf_counter()
        X, Y, off, w, pf, fam = self._check(X, Y, offset, sample_weight)
        self._progress = progress
        try:  # the reporter lives for one fit only (it holds the caller's callable; a fitted model stays picklable)
            if sp.issparse(Y) and not (fam.name == "gaussian" and off is None):
                return self._fit_blocks(X, Y, off, w, start)
            return self._fit_dense(X, Y, off, w, pf, fam, start)
        finally:
            del self._progress

    def _fit_dense(self, X, Y, off, w, pf, fam, start):
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
            self.cv_deviance_ = self.cv_deviance_se_ = self.cv_null_deviance_ = self.cv_deviance_explained_ = None
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

    _PER_RESPONSE = ("alphas_", "coef_path_", "intercept_path_", "deviance_path_", "deviance_explained_path_", "objective_path_",
                     "n_nonzero_path_", "cv_deviance_", "cv_deviance_se_", "cv_null_deviance_", "cv_deviance_explained_")

    def _fit_blocks(self, X, Y, off, w, start):
        """Sparse counts with a non-gaussian family: responses are independent problems, so they are fitted in
        column blocks, each densified on its own (memory: nnz + n × block, never n × all responses)."""
        n, B = Y.shape
        parts = []
        for cols in response_blocks(n, B, self.batch_size):
            o = None if off is None else (off if off.shape[1] == 1 else off[:, cols])
            self._progress.block = f"responses {cols[0] + 1}–{cols[-1] + 1} of {B}"
            parts.append(GLMNet(**self.get_params())._fit(X, Y[:, cols].toarray(), o, w, self._progress))
        first = parts[0]
        for name in self._PER_RESPONSE:
            vals = [getattr(m, name) for m in parts]
            setattr(self, name, None if vals[0] is None else np.concatenate(vals, axis=1))
        for name in ("alpha_index_", "alpha_", "coef_", "intercept_", "dispersion_", "theta_"):
            vals = [np.atleast_1d(getattr(m, name)) if name != "coef_" else np.atleast_2d(m.coef_) for m in parts]
            setattr(self, name, None if getattr(first, name) is None else np.concatenate(vals, axis=0))
        self._one = False
        self.n_features_in_, self.family_ = first.n_features_in_, first.family_
        self.report_ = {**first.report_, "n_responses": int(B), "converged": all(m.report_["converged"] for m in parts),
                        "newton_iterations": sum(m.report_["newton_iterations"] for m in parts),
                        "cd_sweeps": sum(m.report_["cd_sweeps"] for m in parts), "response_blocks": len(parts),
                        "seconds": time.perf_counter() - start}
        return self

    def _fit_path(self, X, Y, off, w, pf, fam, dev, dt, lam_grid):
        P, mean, sd = self._problem(X, Y, off, w, pf, fam, dev, dt)
        gaussian = fam.name == "gaussian"
        B, q = (P.n_responses if gaussian else P.B), P.Xa.shape[1]
        n = X.shape[0]
        a = float(self.l1_ratio)
        pft = P.pf
        nb_est = isinstance(fam, NegativeBinomial) and not fam.fixed
        theta = None
        self._progress.begin(B, q - 1, fam.name)
        if nb_est:
            theta = torch.full((B,), 10.0, dtype=dt, device=dev)
            fam.set_theta(theta)
        U, theta, scale, grad, null_dev = self._null_fit(P, a, theta, nb_est)
        ws = P.w.unsqueeze(1)
        if lam_grid is None:
            lam_grid = self._lambda_grid(grad, pft, a)
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
            df = max(1.0, float(n) - float(np.mean((beta != 0).sum(1))) - 1)
            if fam.name == "gamma":
                mu = P.family.mean(info["eta"])
                disp[k] = pearson_dispersion(P.Y, mu, P.w * n, df).double().cpu().numpy()
            elif fam.name == "gaussian":
                disp[k] = devs[k] * n / df
            else:
                disp[k] = 1.0
            if thetas is not None:
                thetas[k] = (theta if theta is not None else torch.full((B,), float(fam.theta))).double().cpu().numpy()
            self._progress.point(k, K, float(np.median(lam_grid[k])), float(np.median((beta != 0).sum(1))),
                                 None if thetas is None else np.median(thetas[k]))
        self._mean, self._sd = mean, sd
        return {"lam": lam_grid, "coef": coef, "intercept": icpt, "objective": objective, "deviance": devs, "d2": d2,
                "theta": thetas, "dispersion": disp, "iterations": iters, "converged": conv, "sweeps": sweeps}

    def _null_fit(self, P, a, theta, nb_est):
        """Intercept and unpenalised features only: (U, θ, its data fit (the path's convergence scale), the data-fit
        gradient at U (B, q), the intercept-only deviance (B,))."""
        B, q = (P.n_responses if P.gaussian else P.B), P.Xa.shape[1]
        dt, dev = P.Xa.dtype, P.Xa.device
        U = torch.zeros((B, q), dtype=dt, device=dev)
        if not P.gaussian:
            ybar = (P.w.unsqueeze(1) * P.Y).sum(0)
            U[:, 0] = torch.log(torch.clamp(ybar, min=1e-12))
            if P.offset is not None:
                U[:, 0] -= (P.w.unsqueeze(1) * P.offset).sum(0)
        zero = torch.zeros(B, dtype=dt, device=dev)
        one = torch.ones(B, dtype=dt, device=dev)
        U, info = self._solve(P, zero, a, U, P.pf == 0, one, theta, nb_est)
        theta = info.get("theta", theta)
        scale = torch.clamp(info["fit"], min=1e-12)
        if P.gaussian:  # gradient and intercept-only deviance from the Gram statistics
            H, c, yy = P.gram()
            return U, theta, scale, U @ H - c, torch.clamp(yy - c[:, 0] ** 2, min=0)
        if P.sums is not None:  # the same from sufficient statistics: no pass over the cells
            return U, theta, scale, P.sums.gradient_hessian(U)[0], 2 * P.sums.exact(P.sums.intercept_only(U.shape[1]))
        eta = P.eta(U)
        grad = (P.family.gradient(P.Y, eta) * P.w.unsqueeze(1)).T @ P.Xa  # (B, q)
        null_dev = (P.w.unsqueeze(1) * P.family.deviance(P.Y, P.family.mean(null_eta(P.family, P.Y, P.w, P.offset)))).sum(0)
        return U, theta, scale, grad, null_dev

    def _lambda_grid(self, grad, pft, a: float) -> np.ndarray:
        """(n_alphas, B) path from each response's λ_max (every penalised coefficient zero) down to eps · λ_max."""
        B, q = grad.shape
        ratio = torch.where(pft > 0, grad.abs() / (max(a, 1e-3) * torch.clamp(pft, min=1e-300)), torch.zeros_like(grad))
        lmax = ratio.max(1).values.double().cpu().numpy() if q > 1 else np.zeros(B)
        lmax = np.where(lmax > 0, lmax * (1 + 1e-9), 1.0)  # rounding must not let the first coefficient in
        return lmax[None, :] * np.geomspace(1.0, self.eps, self.n_alphas)[:, None]

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
        cross_validate(self, X, Y, off, w, pf, fam, dev, dt)

    # -- prediction and scores -------------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"this {type(self).__name__} model is not fitted yet; call fit() first")

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
        """Per-response deviance, null deviance, deviance explained and pseudo-R² (arrays, or floats for 1-D Y).

        Sparse Y is never densified whole: gaussian scores come from Gram statistics, other families are
        scored in column blocks.
        """
        self._check_fitted()
        X = _matrix(X, "X")
        n = X.shape[0]
        coef, icpt = np.atleast_2d(self.coef_), np.atleast_1d(self.intercept_)
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        off = None if offset is None else np.asarray(offset, dtype=np.float64).reshape(n, -1)
        if sp.issparse(Y):
            Y = sparse_responses(Y)
            if self.family_ == "gaussian" and off is None:
                H, c, yy = gram_stats(np.c_[np.ones(n), X], Y, w / w.sum())
                dev = gaussian_dev(np.c_[icpt, coef], H, c, yy)
                dev0 = np.maximum(yy - c[:, 0] ** 2, 0.0)
                ll, ll0 = -0.5 * (1 + np.log(2 * np.pi * np.maximum(dev, 1e-300))), -0.5 * (1 + np.log(2 * np.pi * np.maximum(dev0, 1e-300)))
                return {"deviance": dev, "null_deviance": dev0, "deviance_explained": 1 - dev / np.maximum(dev0, 1e-300),
                        "pseudo_r2": 1 - ll / np.where(ll0 == 0, -1e-300, ll0)}
        else:
            Y = np.asarray(Y, dtype=np.float64).reshape(n, -1)
        parts = []
        fam_all = self._family_at_fit()
        disp = np.atleast_1d(self.dispersion_)
        wt = torch.as_tensor(w)
        for cols in response_blocks(n, Y.shape[1], self.batch_size if sp.issparse(Y) else Y.shape[1]):
            Yb = Y[:, cols].toarray() if sp.issparse(Y) else Y[:, cols]
            eta = X @ coef[cols].T + icpt[cols][None, :]
            ob = None if off is None else (off if off.shape[1] == 1 else off[:, cols])
            if ob is not None:
                eta = eta + ob
            fam = fam_all.subset(torch.as_tensor(cols)) if len(cols) < Y.shape[1] else fam_all
            kw = {"dispersion": torch.as_tensor(disp[cols])} if fam.name == "gamma" else {}
            sc = glm_scores(fam, torch.as_tensor(Yb), torch.as_tensor(eta), wt, None if ob is None else torch.as_tensor(ob), **kw)
            parts.append({k: v.numpy() for k, v in sc.items()})
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return {k: float(v[0]) for k, v in out.items()} if self._one else out

    def score(self, X, Y, offset=None, sample_weight=None) -> float:
        """Averaged over responses: deviance explained D² (R² for the gaussian) by default; with
        ``score_metric`` (spateo's names) "deviance" (mean deviance, lower is better) or "pseudo_r2" (McFadden)."""
        key = {None: "deviance_explained", "deviance_explained": "deviance_explained", "deviance": "deviance",
               "pseudo_r2": "pseudo_r2", "pseudo_R2": "pseudo_r2"}.get(self.score_metric)
        if key is None:
            raise S3RInputError(f"score_metric must be 'deviance', 'pseudo_r2' or 'deviance_explained', not {self.score_metric!r}")
        return float(np.mean(self.scores(X, Y, offset, sample_weight)[key]))

    def fit_predict(self, X, Y, *, offset=None, sample_weight=None) -> np.ndarray:
        """Fit, then the expected response on the same X (spateo's ``fit_predict``)."""
        return self.fit(X, Y, offset=offset, sample_weight=sample_weight).predict(X, offset)

    def clip_coeffs(self, threshold: float = 1e-8):
        """Set coefficients with |β| < ``threshold`` to exactly 0 (spateo's name; solvers leave round-off
        where a coefficient should vanish) and return self."""
        self._check_fitted()
        coef = np.array(self.coef_, dtype=np.float64)
        coef[np.abs(coef) < threshold] = 0.0
        self.coef_ = coef
        return self


ElasticNetGLM = GLMNet


def __getattr__(name):  # GLM and GLMCV moved to s3r.glm.spateo; the old import path keeps working
    if name in ("GLM", "GLMCV"):
        from s3r.glm import spateo

        return getattr(spateo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
