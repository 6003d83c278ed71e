"""spateo-style names for the elastic-net GLM (seed 001): ``GLM`` and ``GLMCV``, ``score_metric`` "deviance" by default."""

from __future__ import annotations

from s3r.glm.estimator import GLMNet


class GLM(GLMNet):
    """spateo-style name (``spateo.tools.CCI_effects_modeling.regression_utils.GLM``): one elastic-net GLM,
    ``score_metric`` "deviance" by default. ``Tau``: a Tikhonov matrix for the ridge part
    (see :class:`~s3r.glm.estimator.GLMNet`)."""

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
        score_metric: str | None = "deviance",
        Tau=None,
        progress=None,
    ):
        super().__init__(family, l1_ratio=l1_ratio, alpha=alpha, alphas=alphas, n_alphas=n_alphas, eps=eps, cv=cv, selection=selection, penalty_factor=penalty_factor, fit_intercept=fit_intercept, standardize=standardize, theta=theta, tol=tol, max_iter=max_iter, max_sweeps=max_sweeps, random_state=random_state, device=device, dtype=dtype, batch_size=batch_size, score_metric=score_metric, Tau=Tau, progress=progress)


class GLMCV(GLMNet):
    """spateo-style name: the path with ``cv``-fold cross-validation (default 5) choosing the penalty per
    response by held-out deviance; ``score_metric`` "deviance" by default."""

    def __init__(
        self,
        family: str = "gaussian",
        *,
        l1_ratio: float = 0.5,
        alpha: float | None = None,
        alphas=None,
        n_alphas: int = 100,
        eps: float = 1e-3,
        cv: int | None = 5,
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
        score_metric: str | None = "deviance",
        Tau=None,
        progress=None,
    ):
        super().__init__(family, l1_ratio=l1_ratio, alpha=alpha, alphas=alphas, n_alphas=n_alphas, eps=eps, cv=cv, selection=selection, penalty_factor=penalty_factor, fit_intercept=fit_intercept, standardize=standardize, theta=theta, tol=tol, max_iter=max_iter, max_sweeps=max_sweeps, random_state=random_state, device=device, dtype=dtype, batch_size=batch_size, score_metric=score_metric, Tau=Tau, progress=progress)
