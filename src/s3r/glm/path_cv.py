"""Path cross-validation for :class:`~s3r.glm.estimator.GLMNet`: K folds on the full-data λ grid, held-out
deviance per (λ, response), the selection rule (min or 1se)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from s3r.errors import S3RInputError
from s3r.glm.data import gaussian_dev, gram_stats
from s3r.glm.families import get_family
from s3r.glm.metrics import null_eta


def cross_validate(model, X, Y, off, w, pf, fam, dev, dt) -> None:
    """K-fold CV on the full-data λ grid; held-out loss is the mean deviance (θ re-estimated per fold).

    Also the held-out deviance of each fold's intercept-only fit (same offset), so that held-out deviance
    explained (R² for the gaussian) can be read per λ: the seed-002 penalty-selection view.
    """
    n, B = Y.shape
    K = model.alphas_.shape[0]
    folds = int(model.cv)
    if folds < 2 or folds > n:
        raise S3RInputError(f"cv must be between 2 and the number of samples ({n}); got {folds}")
    rng = np.random.default_rng(model.random_state)
    fold_of = rng.permutation(np.arange(n) % folds)
    gaussian = fam.name == "gaussian"
    Yr = Y.tocsr() if sp.issparse(Y) else Y  # row slices
    losses = np.zeros((folds, K, B))
    nulls = np.zeros((folds, K, B))
    sizes = np.zeros(folds)
    for f in range(folds):
        tr, te = fold_of != f, fold_of == f
        famf = get_family(model.family, model.theta)
        offtr = None if off is None else off[tr]
        Ytr, Yte = Yr[tr], Yr[te]
        model._progress.stage = f"CV fold {f + 1}/{folds}"
        path = model._fit_path(X[tr], Ytr, offtr, w[tr], pf, famf, dev, dt, model.alphas_)
        wt_np = w[te] / w[te].sum()
        if gaussian:  # held-out squared error from the test fold's Gram statistics: no n × B residuals
            wtr = w[tr] / w[tr].sum()
            Rtr = Ytr if offtr is None else Ytr - offtr
            b0 = np.asarray(Rtr.T @ wtr).ravel()  # training intercept-only fit
            H, c, yy = gram_stats(np.c_[np.ones(int(te.sum())), X[te]], Yte, wt_np, None if off is None else off[te])
            U = np.concatenate([path["intercept"][..., None], path["coef"]], -1)  # (K, B, q)
            losses[f] = gaussian_dev(U, H, c, yy)
            nulls[f] = np.maximum(yy - 2 * b0 * c[:, 0] + b0 * b0 * H[0, 0], 0.0)[None, :]
        else:
            eta = path["intercept"][:, None, :] + np.einsum("np,kbp->knb", X[te], path["coef"])
            e0 = null_eta(famf, torch.as_tensor(Ytr, dtype=torch.float64), torch.as_tensor(w[tr], dtype=torch.float64),
                          None if offtr is None else torch.as_tensor(offtr, dtype=torch.float64)).numpy()
            b0 = e0[0] - (0.0 if offtr is None else offtr[0])
            eta0 = np.broadcast_to(b0, (int(te.sum()), B))
            if off is not None:
                eta = eta + off[te][None]
                eta0 = eta0 + off[te]
            Yt = torch.as_tensor(Yte, dtype=torch.float64)
            wt = torch.as_tensor(wt_np, dtype=torch.float64).unsqueeze(1)
            mu0 = famf.mean(torch.as_tensor(np.ascontiguousarray(eta0), dtype=torch.float64))
            for k in range(K):
                if path["theta"] is not None:
                    famf.set_theta(torch.as_tensor(path["theta"][k], dtype=torch.float64))
                mu = famf.mean(torch.as_tensor(eta[k], dtype=torch.float64))
                losses[f, k] = (wt * famf.deviance(Yt, mu)).sum(0).numpy()
                nulls[f, k] = (wt * famf.deviance(Yt, mu0)).sum(0).numpy()
        sizes[f] = w[te].sum()
    model._progress.stage = "path"
    wf = sizes / sizes.sum()
    mean = np.einsum("f,fkb->kb", wf, losses)
    se = np.sqrt(np.einsum("f,fkb->kb", wf, (losses - mean) ** 2) / max(folds - 1, 1))
    model.cv_deviance_, model.cv_deviance_se_ = mean, se
    model.cv_null_deviance_ = np.einsum("f,fkb->kb", wf, nulls)
    model.cv_deviance_explained_ = 1 - mean / np.maximum(model.cv_null_deviance_, 1e-300)
    best = np.argmin(mean, axis=0)
    if model.selection == "1se":
        cols = np.arange(B)
        limit = mean[best, cols] + se[best, cols]
        best = np.argmax(mean <= limit[None, :], axis=0)  # the largest λ (first index) within one SE
    model.alpha_index_ = best.astype(np.int64)
