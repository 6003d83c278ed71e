"""Out-of-fold prediction and the held-out loss: of a fold's solutions, the intercept-only model and the spatial trend."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from s3r.cv.folds import heldout_mask, scored_spots, training_weights
from s3r.cv.names import PREDICTORS, TREND_LAMBDAS
from s3r.cv.solve import CVProblem, FoldSolution, solve_fold
from s3r.errors import S3RInputError
from s3r.graph import validate_coords
from s3r.problem import Problem


def predict(X, W, covariate_part=None) -> np.ndarray:
    """ŷ = ⟨x_i, W_i⟩ for W of shape (n, p) → (n,) or (n, B, p) → (n, B)."""
    X = np.asarray(X)
    W = np.asarray(W)
    pred = np.einsum("np,np->n", X, W) if W.ndim == 2 else np.einsum("np,nbp->nb", X, W)
    return pred if covariate_part is None else pred + covariate_part


def neighbour_average(W, coords, train, k: int = 7) -> np.ndarray:
    """W with each held-out row replaced by the mean of its k nearest *training* spots in space."""
    W = np.array(W, copy=True)
    xy = validate_coords(coords, source="coordinates")
    train = np.asarray(train, dtype=bool)
    held = np.flatnonzero(~train)
    if held.size == 0:
        return W
    train_idx = np.flatnonzero(train)
    if train_idx.size == 0:
        raise S3RInputError("every spot is held out; a neighbour average needs training spots")
    k = int(min(k, train_idx.size))
    _, nearest = cKDTree(xy[train_idx]).query(xy[held], k=k)
    nearest = train_idx[np.asarray(nearest).reshape(held.size, k)]
    W[held] = W[nearest].mean(axis=1)
    return W


def heldout_mse(y, pred, scored) -> np.ndarray:
    """Mean squared error over the scored spots, per problem when ``pred`` is (n, B)."""
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    scored = np.asarray(scored, dtype=bool)
    if not scored.any():
        return np.full(pred.shape[1:] if pred.ndim == 2 else (), np.nan)
    resid = pred[scored] - (y[scored, None] if pred.ndim == 2 else y[scored])
    return np.mean(resid**2, axis=0)


def heldout_deviance(y, eta, scored, family) -> np.ndarray:
    """Mean unit deviance over the scored spots per problem (``eta`` (n, B): linear predictor with offset)."""
    y = np.asarray(y, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    scored = np.asarray(scored, dtype=bool)
    if not scored.any():
        return np.full(eta.shape[1], np.nan)
    Y = torch.as_tensor(np.broadcast_to(y[scored, None], eta[scored].shape).copy())
    E = torch.as_tensor(eta[scored])
    return (2.0 * family.loss(Y, E)).mean(0).numpy()


def reference_theta(y, offset=None) -> float:
    """A negative binomial θ for tuning when the final fit estimates θ: the ML θ of the intercept (+ offset)
    model. It fixes one deviance scale for every trial and fold, so held-out losses stay comparable (each
    trial re-estimating θ would score trials on different scales); it errs towards overdispersion."""
    from s3r.glm.families import NegativeBinomial, estimate_theta
    from s3r.glm.metrics import null_eta

    Y = torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(-1, 1))
    off = None if offset is None else torch.as_tensor(np.asarray(offset, dtype=np.float64).reshape(-1, 1))
    w = torch.ones(Y.shape[0], dtype=torch.float64)
    fam, theta = NegativeBinomial(), torch.tensor([10.0], dtype=torch.float64)
    for _ in range(50):
        fam.set_theta(theta)
        new = estimate_theta(Y, fam.mean(null_eta(fam, Y, w, off)), w.unsqueeze(1), theta)
        done = float((new - theta).abs().max() / theta.max()) < 1e-8
        theta = new
        if done:
            break
    return float(theta[0])


def null_loss(problem: Problem, folds, fold: int) -> float:
    """Held-out loss of the covariates-only model (the intercept) fitted on the training spots: the yardstick a
    spatially varying effect has to beat."""
    held = heldout_mask(folds, fold)
    eta = problem.null_eta(training_weights(folds, fold))
    scored = scored_spots(problem.nonzero, held, problem.mask_zero_response)
    if not problem.gaussian:
        return float(heldout_deviance(problem.y, eta[:, None], scored, problem.glm_family())[0])
    return float(problem.to_user_loss(heldout_mse(problem.y, eta[:, None], scored))[0])




def trend_losses(problem: Problem, folds, fold: int, predictor: str = "graph", *, k: int = 7, tol: float = 1e-2,
                 max_iter: int = 500, chunk: int = 100) -> list[float]:
    """Held-out losses of the spatial trend alone (``Problem.spatial_trend``) over ``TREND_LAMBDAS``, on one fold.

    The trend's λ path is relative to its own constant-map scale, so it needs no setting; the selection keeps the
    path's best value, which favours the trend, i.e. makes "effect found" harder to claim, not easier.
    """
    trend = problem.spatial_trend()
    scale = trend.natural_scales()["lambda_smooth"]
    params = [{"lambda_smooth": r * scale, "alpha": 0.0, "beta": 0.0} for r in TREND_LAMBDAS]
    solution = solve_fold(trend, params, folds, fold, tol=tol, max_iter=max_iter, chunk=chunk)
    return [float(v) for v in fold_losses(trend, solution, folds, fold, predictor, k=k)]


def fold_losses(problem: CVProblem, solution: FoldSolution, folds, fold: int, predictor: str = "graph", k: int = 7) -> np.ndarray:
    """Held-out loss per problem of the batch: MSE (gaussian) or mean deviance (count families, offset included);
    ``graph`` uses the fitted held-out rows as they are."""
    if predictor not in PREDICTORS:
        raise S3RInputError(f"unknown predictor {predictor!r}; use one of {', '.join(PREDICTORS)}")
    held = heldout_mask(folds, fold)
    W = solution.W.astype(np.float64)
    if predictor == "neighbours":
        W = np.stack([neighbour_average(W[:, b], problem.coords, ~held, k) for b in range(W.shape[1])], axis=1)
    pred = predict(problem.X, W)
    if problem.covariates is not None and solution.gamma is not None:
        pred = pred + problem.covariates @ solution.gamma.astype(np.float64).T
    scored = scored_spots(problem.nonzero, held, problem.mask_zero_response)
    if not problem.gaussian:
        eta = pred if problem.offset is None else pred + problem.offset[:, None]
        return heldout_deviance(problem.y, eta, scored, problem.glm_family())
    return problem.to_user_loss(heldout_mse(problem.y, pred, scored))


def cross_validate(
    problem: CVProblem, params: list[dict], folds, *, predictor: str = "graph", tol: float = 1e-2, max_iter: int = 500,
) -> np.ndarray:
    """(n_folds, B) held-out loss (MSE, or mean deviance for count families) of each parameter set on each fold."""
    folds = np.asarray(folds)
    return np.stack([
        fold_losses(problem, solve_fold(problem, params, folds, f, tol=tol, max_iter=max_iter), folds, f, predictor)
        for f in np.unique(folds)
    ])
