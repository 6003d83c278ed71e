"""The final fits of several targets of one sample as one batched solve.

Why: the targets of a sample share the design, the graph and the covariates, so their fits differ only in the response
and the penalties, which the batched solver takes per problem — on a GPU the batch is the lever. Each model comes back
as if fitted alone: the same optimum (to the tolerance), its own report; only the working-set figures and the solve
time are the batch's. On a CPU the targets are fitted one by one: 10 DLPFC targets (3,592 spots × 25 regulators,
tol 1e-5, mixed precision) took 74.3 CPU-s in one batch against 55.8 alone (the batch solves the union of the
targets' working sets, 25 columns, where alone they need 12–25; benchmarks/README.md, session 16).
"""

from __future__ import annotations

import numpy as np
import torch

from s3r.errors import S3RInputError
from s3r.estimator import S3R, _as_matrix
from s3r.solver import resolve_device, resolve_dtype, solve_batch
from s3r.solver.batch import FLOAT32_TOL

# parameters the targets of one batch may not differ in (everything but λ, α, β and what only the report reads)
SHARED = ("smooth", "graph", "k", "radius", "max_edge_length", "compat", "scaling", "mask_zero_response", "standardize",
          "fit_intercept", "spatial_intercept", "penalty_factor", "tol", "max_iter", "device", "dtype", "family")


def fit_targets(models: list[S3R], X, ys: list, coords, *, covariates=None, spot_graph=None, offset=None,
                batch_on_cpu: bool = False, starts: list | None = None) -> list[S3R]:
    """Fit ``models[t]`` to ``ys[t]`` (every model on the same X, coords, covariates) — batched where the models
    can share one solve (gaussian, no warm start, the same settings but λ, α, β) on a GPU, else one by one.
    ``starts[t]``: a map to start target t from (:meth:`S3R.fit`'s ``start``), used by the one-by-one fits."""
    starts = [None] * len(models) if starts is None else starts
    if not _batchable(models) or (resolve_device(models[0].device).type == "cpu" and not batch_on_cpu):
        return [m.fit(X, y, coords, covariates=covariates, spot_graph=spot_graph, offset=offset, start=w)
                for m, y, w in zip(models, ys, starts)]
    from s3r.problem import assemble

    first = models[0]
    for m in models:
        m._check_params()
    X = _as_matrix(X, "X")
    n, p = X.shape
    mixed = first.dtype == "mixed" and first.tol >= FLOAT32_TOL
    device, dtype = resolve_device(first.device), (torch.float64 if first.dtype == "mixed" else resolve_dtype(first.dtype))
    problems = []
    for t, (m, y) in enumerate(zip(models, ys)):
        problem = assemble(X, y, coords, model=m.model_settings(), covariates=covariates, offset=offset,
                           penalty_factor=m.penalty_factor, graph=spot_graph if spot_graph is not None else (problems[0].graph if problems else None),
                           dtype=dtype, device=device)
        problems.append(problem if t == 0 else problem.without_design())  # one standardised design for the batch
    lead = problems[0]
    free = np.stack([pr.free_rows() for pr in problems], axis=1)
    penalties = [pr.solver_penalties(m.lambda_smooth, m.alpha, m.beta, None) for pr, m in zip(problems, models)]
    lam, alpha, beta = (np.array([float(np.asarray(v[i]).reshape(-1)[0]) for v in penalties]) for i in range(3))
    result = solve_batch(
        lead.X, np.stack([pr.y for pr in problems], axis=1), smooth=lead.smooth, operator=lead.operator, lambda_smooth=lam,
        alpha=alpha, beta=beta, weights=None, free_rows=free, covariates=lead.covariates, penalty_factor=lead.penalty_factor,
        tol=first.tol, max_iter=first.max_iter, device=device, dtype="mixed" if mixed else dtype,
        own_X=True,  # the lead problem's standardised copy, renumbered in place and put back
    )
    for t, (m, problem) in enumerate(zip(models, problems)):
        m.graph_ = problem.graph
        m.scale_ = problem.x_scale[:p]
        m._finish(problem, result.one(t), (lam[t], alpha[t], beta[t]), None, free[:, t], device, dtype, p)
    return models


def intercept_only(model: S3R, X, y, coords, *, covariates=None, spot_graph=None, offset=None) -> S3R:
    """``model`` with α raised to the data's α_zero, the smallest lasso weight at which W = 0 is optimal at any λ
    (a maximum over single spots, exact; :meth:`s3r.problem.Problem.natural_scales`): the intercept-only (and
    covariates) model inside the same model family, as glmnet's one-SE rule falls back to λ_max when no penalty beats
    the null model by a standard error. The solver certifies W = 0 without iterating. Unfitted; fit it as usual."""
    from s3r.problem import assemble

    problem = assemble(X, y, coords, model=model.model_settings(), covariates=covariates, offset=offset,
                       penalty_factor=model.penalty_factor, graph=spot_graph)
    alpha_zero = problem.natural_scales()["alpha_zero"]
    return S3R(**{**model.get_params(), "alpha": alpha_zero * (1 + 1e-6)})  # strictly above: no rounding keeps a spot


NO_EFFECT_FITS = ("intercept_only", "chosen_trial")


def check_no_effect(no_effect: str) -> None:
    if no_effect not in NO_EFFECT_FITS:
        raise S3RInputError(f"no_effect (the workflow's tune.no_effect, s3r fit --no-effect) must be one of "
                            f"{', '.join(NO_EFFECT_FITS)}; got {no_effect!r}")


def tuned_final_model(model: S3R, tuning: dict | None, X, y, coords, *, no_effect: str = "intercept_only", covariates=None,
                      spot_graph=None, offset=None) -> tuple[S3R, str | None, bool]:
    """(final model, words for fit.json saying which it is, whether it is the intercept-only replacement) for tuned
    parameters: the chosen trial as it is, or after a "no effect" verdict (``no_effect`` "intercept_only", the default)
    :func:`intercept_only` of it, which takes no start map. One rule for the workflow's final fits and ``s3r fit
    --params``, so both give the same coefficients. Untuned (``tuning`` empty): (model, None, False)."""
    check_no_effect(no_effect)
    if not tuning:
        return model, None, False
    trial = tuning.get("trial")
    if tuning.get("effect_found") is not False or no_effect != "intercept_only":
        return model, f"trial {trial} as chosen", False
    model = intercept_only(model, X, y, coords, covariates=covariates, spot_graph=spot_graph, offset=offset)
    return model, (f"intercept-only: no effect found, so every coefficient is zero (alpha raised to {model.alpha:.6g}, the "
                   f"smallest value that zeroes every coefficient at any smoothing); tune.no_effect: chosen_trial "
                   f"(s3r fit --no-effect chosen-trial) fits trial {trial} instead"), True


def _batchable(models: list[S3R]) -> bool:
    if len(models) < 2:
        return False
    params = [m.get_params() for m in models]
    same = all(_equal(params[0][key], q[key]) for q in params[1:] for key in SHARED if key in params[0])
    return same and all(m.family == "gaussian" and not m.warm_start and m.callback is None and not m.verbose for m in models)


def _equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b
