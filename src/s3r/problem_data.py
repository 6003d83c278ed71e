"""The user's data made ready for a :class:`s3r.problem.Problem`: the family and offset, the
design and response scaled, the negative binomial θ fixed. Steps of ``s3r.problem.assemble``, one thing each."""

from __future__ import annotations

import numpy as np
import torch

from s3r.errors import S3RInputError


def family_and_offset(model: dict, y: np.ndarray, offset, y_name: str) -> tuple[str, np.ndarray | None]:
    """The family's name (its response checked) and the offset, which only the log-link families take."""
    from s3r.glm.families import FAMILIES, get_family

    family = str(model.get("family") or "gaussian")
    if family not in FAMILIES:
        raise S3RInputError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    get_family(family).check_response(torch.as_tensor(y), y_name)
    if offset is not None:
        if family == "gaussian":
            raise S3RInputError("an offset applies to the log-link families (poisson, negative_binomial, gamma); subtract it from y for gaussian")
        offset = np.asarray(offset, dtype=np.float64).reshape(-1)
        if offset.shape != y.shape or not np.all(np.isfinite(offset)):
            raise S3RInputError(f"offset needs one finite value per spot ({y.shape[0]}); got {offset.shape[0]} values")
    return family, offset


def scaled_features(X: np.ndarray, model: dict, penalty_factor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """(scaled design, feature scales, penalty factors, spatial intercept?): with the spatial intercept, a column of
    ones that only the smoothness penalty holds.

    Features are divided by their root mean square, not centred: with a coefficient per spot, centring a feature
    would move a spatially varying term into the intercept.
    """
    n, p = X.shape
    if model["standardize"]:
        scale = np.sqrt(np.mean(X**2, axis=0))
        scale = np.where(scale > 0, scale, 1.0)
    else:
        scale = np.ones(p)
    Xs = X / scale
    pf = None
    if penalty_factor is not None:
        pf = np.asarray(penalty_factor, dtype=np.float64).reshape(-1)
        if pf.shape[0] != p or np.any(pf < 0) or not np.all(np.isfinite(pf)):
            raise S3RInputError(f"penalty_factor needs {p} finite values ≥ 0 (one per feature); got {pf.shape[0]}")
    spatial_intercept = bool(model["spatial_intercept"])
    if spatial_intercept:
        Xs = np.hstack([Xs, np.ones((n, 1))])
        scale = np.append(scale, 1.0)
        pf = np.append(np.ones(p) if pf is None else pf, 0.0)  # smoothness only
    return Xs, scale, pf, spatial_intercept


def response_scale(y: np.ndarray, model: dict, gaussian: bool) -> tuple[float, float]:
    """(centre, scale) of the response: centred (with an intercept) and divided by its spread, gaussian standard
    scaling only; (0, 1) otherwise."""
    y_center, y_scale = 0.0, 1.0
    if gaussian and model["scaling"] == "standard":
        if model["fit_intercept"]:
            y_center = float(np.mean(y))
            y_scale = float(np.std(y))
        else:
            y_scale = float(np.sqrt(np.mean(y**2)))
        if not y_scale > 0:
            y_scale = 1.0
    return y_center, y_scale


def fixed_theta(model: dict, family: str, y: np.ndarray, offset) -> float | None:
    """The negative binomial θ the solver holds fixed: the given number, 1 when unset, or with "estimate" the
    intercept model's ML θ (the final fit re-estimates it); None for the other families."""
    if family != "negative_binomial":
        return None
    theta = model.get("theta")
    if theta is None:
        theta = 1.0
    elif theta == "estimate":
        from s3r.cv import reference_theta

        theta = reference_theta(y, offset)
    return float(theta)


def _spans_ones(X: np.ndarray) -> bool:
    """Whether some combination of the columns is 1 in every row (to 1e-8), by the normal equations: a Gram matrix
    is a third of the SVD solve's cost (10⁴ × 1,000: 1.2 against 3.2 CPU s; residual 1e-12 on proportions)."""
    c = np.linalg.lstsq(X.T @ X, X.sum(axis=0), rcond=None)[0]
    return bool(np.max(np.abs(X @ c - 1.0)) <= 1e-8)


def warn_if_compositional(X: np.ndarray, fit_intercept: bool, x_name: str = "X") -> bool:
    """Warn (one line) when the features span the intercept, as proportions summing to one do: the coefficients are
    then identified only up to a shift along that combination (the ℓ1 terms pick one), so a reader must compare
    features (contrasts), not read each sign alone. True when it warned."""
    n, p = X.shape
    if not fit_intercept or p < 2 or n <= p:
        return False
    # a combination that is 1 in every spot is 1 in any subset of spots: a few × p rows rule most designs out in a
    # fraction of the full solve
    rows = np.random.default_rng(0).choice(n, size=2 * p, replace=False) if n > 4 * p else slice(None)
    if not _spans_ones(X[rows]) or (not isinstance(rows, slice) and not _spans_ones(X)):
        return False
    import warnings

    warnings.warn(f"{x_name}: the features add up to the intercept in every spot (compositional, e.g. cell-type proportions): "
                  "with fit_intercept their coefficients are identified only as contrasts between features", stacklevel=4)
    return True
