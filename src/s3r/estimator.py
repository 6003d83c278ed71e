"""The S3R estimator: a coefficient per spot and feature, smooth over a spot graph, sparse over features.

    F(W) = (1/n) Σ_i o_i (y_i − ⟨x_i, W_i⟩ − ⟨z_i, γ⟩)² + λ S(W) + α Σ_ij |W_ij| + β √n Σ_j ‖W_:,j‖₂

scikit-learn style: parameters in ``__init__``, learned state in trailing-underscore attributes. The solve is
delegated to :func:`s3r.solver.solve_batch`; this class only turns user input into a problem and back.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from sklearn.base import BaseEstimator

from s3r.errors import S3RInputError
from s3r.validation import finite_matrix, finite_vector
from s3r.graph import SpatialGraph, build_graph, neighbour_mean_operator, reference_knn_operator, validate_coords
from s3r.solver import SMOOTH_MODES, build_operator, resolve_device, resolve_dtype, solve_batch
from s3r.solver.batch import FLOAT32_TOL

NO_THETA = (None, (), False)  # (θ, θ's history, at its bound) of a family without θ


def _as_matrix(X, name: str) -> np.ndarray:
    return finite_matrix(X, name)


class S3R(BaseEstimator):
    """Spatially smooth sparse regression.

    ``scaling`` picks the parameterisation of λ, α, β (see :mod:`s3r.problem`): ``standard`` (the default) is
    scale-free — target standardised, features divided by their root mean square, loss and penalties both means
    over spots — so the same values mean the same on any section; ``reference`` is the reference
    implementation's objective on the raw data (implied by ``compat``). ``fit_intercept``, ``standardize`` and
    ``mask_zero_response`` default (None) to the parameterisation's choice: intercept, scaling and no mask for
    ``standard``; none of them, and the y == 0 mask, for ``reference``. ``spatial_intercept`` adds a spatially
    varying intercept penalised by the smoothness term only, so domain-level mean shifts do not leak into the
    feature coefficients (reported as ``spatial_intercept_``).

    Parameters mirror the objective: ``smooth`` picks S (``tv`` = Σ_edges |W_a − W_b|, ``graph_l1`` = ‖G W‖₁ with G
    each spot against its neighbours' mean — or the reference implementation's kNN operator with
    ``compat=True`` — and ``quadratic`` = tr(Wᵀ L W)); ``lambda_smooth``, ``alpha``, ``beta`` weight it, the lasso
    and the group lasso (β is multiplied by √n, as in the reference). ``mask_zero_response`` fixes W_i = 0 where
    y_i == 0, like the reference; turn it off to let smoothness fill those spots in.

    ``family`` swaps the squared error for a log-link count data fit (mean deviance); ``theta`` is the negative
    binomial θ (Var = μ + μ²/θ): a number, None (1), or ``"estimate"``, which alternates the spatial fit with a
    1-D maximum-likelihood update of θ given μ until θ changes by less than ``theta_tol`` (relative) and
    reports it as ``theta_``.
    """

    def __init__(
        self,
        smooth: str = "tv",
        lambda_smooth: float = 0.01,
        alpha: float = 0.01,
        beta: float = 0.01,
        *,
        graph: str = "knn",
        k: int = 7,
        radius: float | None = None,
        max_edge_length: float | None = None,
        compat: bool = False,
        scaling: str | None = None,
        mask_zero_response: bool | None = None,
        standardize: bool | None = None,
        fit_intercept: bool | None = None,
        spatial_intercept: bool = False,
        penalty_factor=None,
        tol: float = 1e-5,
        max_iter: int = 20_000,
        device: str = "auto",
        dtype: str = "mixed",
        warm_start: bool = False,
        verbose: bool = False,
        callback=None,
        family: str = "gaussian",
        theta: float | str | None = None,
        theta_tol: float = 1e-3,
        theta_max_iter: int = 25,
    ):
        self.smooth = smooth
        self.lambda_smooth = lambda_smooth
        self.alpha = alpha
        self.beta = beta
        self.graph = graph
        self.k = k
        self.radius = radius
        self.max_edge_length = max_edge_length
        self.compat = compat
        self.scaling = scaling
        self.spatial_intercept = spatial_intercept
        self.mask_zero_response = mask_zero_response
        self.standardize = standardize
        self.fit_intercept = fit_intercept
        self.penalty_factor = penalty_factor
        self.tol = tol
        self.max_iter = max_iter
        self.device = device
        self.dtype = dtype
        self.warm_start = warm_start
        self.verbose = verbose
        self.callback = callback
        self.family = family
        self.theta = theta
        self.theta_tol = theta_tol
        self.theta_max_iter = theta_max_iter

    # -- fitting ---------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.smooth not in SMOOTH_MODES:
            raise S3RInputError(f"smooth must be one of {', '.join(SMOOTH_MODES)}; got {self.smooth!r}")
        for name in ("lambda_smooth", "alpha", "beta"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise S3RInputError(f"{name} must be a finite number ≥ 0; got {value!r}")
        if self.compat and self.smooth != "graph_l1":
            raise S3RInputError("compat reproduces the reference implementation's graph_l1 (L mode) operator; use smooth='graph_l1' or drop compat")
        if self.tol <= 0 or self.max_iter < 1:
            raise S3RInputError("tol must be > 0 and max_iter ≥ 1")
        from s3r.glm.families import FAMILIES

        if self.family not in FAMILIES:
            raise S3RInputError(f"family must be one of {', '.join(FAMILIES)}; got {self.family!r}")
        theta = self.theta
        if theta is not None and theta != "estimate":
            if isinstance(theta, bool) or not isinstance(theta, (int, float, np.floating)) or not np.isfinite(theta) or theta <= 0:
                raise S3RInputError(f"theta must be a number > 0, None or 'estimate'; got {theta!r}")
        if theta == "estimate" and self.family != "negative_binomial":
            raise S3RInputError(f"theta='estimate' applies to family 'negative_binomial', not {self.family!r}")
        if not self.theta_tol > 0 or int(self.theta_max_iter) < 1:
            raise S3RInputError("theta_tol must be > 0 and theta_max_iter ≥ 1")

    def model_settings(self) -> dict:
        """The model part of the parameters, in the form :func:`s3r.problem.assemble` (and tuning) take."""
        return {
            "smooth": self.smooth, "graph": self.graph, "k": self.k, "radius": self.radius, "max_edge_length": self.max_edge_length,
            "compat": self.compat, "scaling": self.scaling, "fit_intercept": self.fit_intercept, "standardize": self.standardize,
            "mask_zero_response": self.mask_zero_response, "spatial_intercept": self.spatial_intercept,
            "family": self.family, "theta": self.theta,
        }

    def build_smoothness(self, coords, graph: SpatialGraph | None = None, *, dtype=torch.float64, device="cpu"):
        """The smoothness operator for these coordinates (and the graph it came from, if any)."""
        from s3r.problem import smoothness_operator

        return smoothness_operator(self.smooth, coords, graph_method=self.graph, k=self.k, radius=self.radius,
                                   max_edge_length=self.max_edge_length, compat=self.compat, graph=graph, dtype=dtype, device=device)

    def fit(self, X, y, coords=None, *, sample_weight=None, covariates=None, spot_graph: SpatialGraph | None = None,
            offset=None, start=None) -> "S3R":
        """``offset`` (log library size): added to the linear predictor of count families (log μ = ⟨x, W⟩ + offset).
        ``spot_graph``: a graph already built for these spots (e.g. the workflow's graph file), used instead of
        building one from ``graph``/``k``/``radius`` (named apart from the ``graph`` parameter, the method's name).
        ``start``: (n, p) a map on the solver's (standardised) scale to start from, such as the tuning's fold solutions
        of the chosen trial (gaussian; :func:`s3r.solver.flow_start.primal_start` completes it to a solver state)."""
        from s3r.problem import assemble

        self._check_params()
        X = _as_matrix(X, "X")
        n, p = X.shape
        finite_vector(y, n, "y")
        weights = None if sample_weight is None else finite_vector(sample_weight, n, "sample_weight")
        if weights is not None and (np.any(weights < 0) or np.any(weights > 1)):
            raise S3RInputError("sample_weight must lie in [0, 1] (observation weights o_i)")
        off = None if offset is None else finite_vector(offset, n, "offset")
        # "mixed": float32 iterations, a float64 polish only where float32 falls short of ``tol`` (gaussian solves at a
        # tolerance float32 can meet; below it, and for the GLM families and the assembly, float64 throughout: a float32
        # run warm-started at a 1e-7 optimum was measured to stall at its iteration cap before the polish)
        mixed = self.dtype == "mixed" and self.tol >= FLOAT32_TOL
        device, dtype = resolve_device(self.device), (torch.float64 if self.dtype == "mixed" else resolve_dtype(self.dtype))
        problem = assemble(X, y, coords, model=self.model_settings(), covariates=covariates, offset=off,
                           penalty_factor=self.penalty_factor, graph=spot_graph, dtype=dtype, device=device)
        self.graph_ = problem.graph
        self.scale_ = problem.x_scale[:p]
        Z = problem.covariates
        free = problem.free_rows()
        lam, alpha, beta = problem.solver_penalties(self.lambda_smooth, self.alpha, self.beta, weights)
        warm = self._warm_state(n, problem.X.shape[1], Z) if start is None else self._start_state(problem, start, (lam, alpha, beta), weights)
        callback = self.callback or (_verbose_printer() if self.verbose else None)
        if problem.gaussian:
            result = solve_batch(
                problem.X, problem.y, smooth=problem.smooth, operator=problem.operator, lambda_smooth=lam, alpha=alpha,
                beta=beta, weights=weights, free_rows=free, covariates=Z, penalty_factor=problem.penalty_factor,
                tol=self.tol, max_iter=self.max_iter, device=device, dtype="mixed" if mixed else dtype, callback=callback, **warm,
                own_X=True,  # the problem's standardised copy: renumbered in place, not copied again (put back after)
            )
            theta_state = NO_THETA
        else:
            from s3r.solver.glm_batch import solve_glm_batch

            gamma_start = None if Z is None else problem.null_gamma(weights).reshape(1, -1)  # no crawl to the intercept

            def solve(theta, W0, gamma0):
                return solve_glm_batch(
                    problem.X, problem.y, family=self.family, theta=theta, smooth=problem.smooth, operator=problem.operator,
                    lambda_smooth=lam, alpha=alpha, beta=beta, weights=weights,
                    free_rows=free, covariates=Z, offset=off, penalty_factor=problem.penalty_factor,
                    W0=W0, gamma0=gamma_start if gamma0 is None else gamma0, tol=self.tol, max_iter=self.max_iter, device=device,
                    dtype=dtype, callback=callback,
                )

            if self.theta == "estimate":
                result, theta_state = self._fit_theta(solve, problem.X, problem.y, Z, off, weights, warm)
            else:
                theta = (1.0 if self.theta is None else float(self.theta)) if self.family == "negative_binomial" else None
                result = solve(theta, warm.get("W0"), warm.get("gamma0"))
                theta_state = (theta, [] if theta is None else [theta], False)
        return self._finish(problem, result, (lam, alpha, beta), weights, free, device, dtype, p, theta_state)

    def _finish(self, problem, result, penalties, weights, free, device, dtype, p: int, theta_state=None) -> "S3R":
        """The fitted attributes from a one-problem solve result (on the solver's scale) of ``problem``;
        ``theta_state`` (θ used, θ's history, whether estimation ran to its bound) for the NB family."""
        self.theta_, self.theta_history_, self.theta_at_bound_ = NO_THETA if theta_state is None else theta_state
        self.theta_history_ = list(self.theta_history_)
        # the solver's state (W and the edges × p dual on its scale: 2.2 GB at 10⁵ × 1,000 in float32) only for the
        # warm_start refits that read it (a workflow chunk holds its fitted targets until written); the figures stay
        self._result = result if self.warm_start else replace(result, W=None, dual=None, data_dual=None)
        W = result.W[:, 0, :].double().cpu().numpy()
        self.coef_, self.spatial_intercept_ = problem.coefficients(W)
        gamma = result.gamma[0].double().cpu().numpy() if result.gamma is not None else None
        intercept, self.covariate_coef_ = problem.covariate_coefficients(gamma)
        self.intercept_ = float(intercept)
        self.mask_ = free == 0
        self.n_features_in_ = p
        self.n_iter_ = int(result.iterations[0])
        self.report_ = self._report(problem, result, penalties, weights, free, device, dtype)
        if self.dtype == "mixed":  # which precision the answer came from
            info = result.precision or {"float32_iterations": [0], "float32_seconds": 0.0, "polished": False}
            final = "float64" if info["polished"] or result.precision is None else "float32"
            self.report_.update(dtype="mixed", precision={**info, "final": final})
        self.trace_ = result.trace
        self.problem_ = problem.without_design()  # the standardised n × p copy is the solve's alone (0.8 GB at 10⁵ × 1,000)
        return self

    def _report(self, problem, result, penalties, weights, free, device, dtype) -> dict:
        """``report_``: the solve's outcome, the scales that map the user's λ, α, β onto the solver's, and the sizes."""
        lam, alpha, beta = penalties
        n, p = problem.n_spots, self.n_features_in_
        c = problem.penalty_multiplier(weights)
        return {
            "objective": float(result.objective[0]) / (c * n) if problem.scaling == "standard" else float(result.objective[0]),
            "objective_scale": "standard: (1/Σo) Σ o_i (ỹ_i − ŷ_i)² + (1/n)(λ S + α Σ|W̃| + β √n Σ‖W̃_j‖), on the standardised scale"
            if problem.scaling == "standard" else "reference: (1/n) Σ o_i (y_i − ŷ_i)² + λ S + α Σ|W| + β √n Σ‖W_j‖",
            "scaling": problem.scaling,
            "solver_penalties": {"lambda_smooth": float(lam), "alpha": float(alpha), "beta": float(beta)},
            "y_center": problem.y_center,
            "y_scale": problem.y_scale,
            "x_scale": [float(v) for v in problem.x_scale[:p]],
            # reference-form weights on the raw data: λ_j = λ·c·s_j (α, β alike), c = s_y·Σo/n² (README, Parameterisation)
            "reference_factor": float(problem.y_scale * c) if problem.scaling == "standard" else 1.0,
            "fit_intercept": problem.fit_intercept,
            "spatial_intercept": problem.spatial_intercept,
            "standardize": bool(np.any(problem.x_scale[:p] != 1.0)) or bool(self.standardize),
            "mask_zero_response": problem.mask_zero_response,
            "converged": bool(result.converged[0]),
            "iterations": int(result.iterations[0]),
            "solve_seconds": float(result.seconds),
            "primal_residual": float(result.primal_residual[0]),
            "dual_residual": float(result.dual_residual[0]),
            "tol": float(self.tol),
            "method": result.method,
            # working-set solves: the features solved for, the outer solves, and whether every feature left out was
            # certified optimal at zero (s3r.solver.working_set); None when every feature was solved for
            "working_set_size": None if result.working_set is None else result.working_set["size"],
            "working_set_outer_iterations": None if result.working_set is None else result.working_set["outer_iterations"],
            "working_set_check_passed": None if result.working_set is None else result.working_set["check_passed"],
            # coarse-to-fine solves (s3r.solver.multilevel): aggregates and iterations per level, coarsest first; the
            # fine level's iterations are "iterations"; None when the problem was solved on the spots alone
            "coarse_levels": None if result.multilevel is None else [
                {"aggregates": lv["aggregates"], "iterations": lv["iterations"][0], "working_set_size": lv["working_set"]}
                for lv in result.multilevel["levels"]],
            # started at the spatially constant model (s3r.solver.constant_start): the ratio max|U|/λ of its edge flow
            "constant_start": None if result.constant_start is None else float(result.constant_start[0]),
            "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "precision": None,
            "family": self.family,
            "theta": self.theta_,
            "theta_estimated": self.theta == "estimate" and not self.theta_at_bound_,
            "theta_at_bound": self.theta_at_bound_,  # estimation ran to 1e6; θ is the intercept model's instead
            "theta_iterations": len(self.theta_history_) if self.theta == "estimate" else 0,
            "n_spots": int(n),
            "n_features": int(p),
            "n_edges": int(problem.operator.shape[0]),
            "lattice": None if problem.graph is None else problem.graph.lattice,  # e.g. "hexagonal, 6 neighbours"
            "n_masked_spots": int((free == 0).sum()),
            "nonzero_fraction": float(np.mean(self.coef_ != 0)),
            "selected_features": int(np.sum(np.any(self.coef_ != 0, axis=0))),
            # columns the solver left at a noise-level norm, proven zero by the optimality check and zeroed
            # (s3r.solver.support): without this a 1e-8 map would count as "selected"
            "numerical_zeros_removed": len(result.zeroed[0]) if result.zeroed else 0,
        }

    def _fit_theta(self, solve, Xs, y, Z, off, weights, warm):
        """Alternate the spatial fit at fixed θ with the ML θ given its μ, each fit warm-started from the last.

        Both steps lower the same negative log-likelihood (the penalties do not involve θ), so the alternation
        settles; it starts from the intercept (+ offset) model's θ, which overstates the dispersion the spatial
        fit leaves, so θ rises towards its value at the fitted μ.
        """
        from s3r.cv import reference_theta
        from s3r.glm.families import estimate_theta

        theta = reference_theta(y, off)
        history = [theta]
        W0, gamma0 = warm.get("W0"), warm.get("gamma0")
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(len(y), -1))  # noqa: E731
        w = t(np.ones(len(y)) if weights is None else weights)
        for _ in range(int(self.theta_max_iter)):
            result, used = solve(theta, W0, gamma0), theta
            W0 = result.W
            gamma0 = None if result.gamma is None else result.gamma.double().cpu().numpy()
            eta = np.einsum("np,np->n", Xs, result.W[:, 0, :].double().cpu().numpy())
            if gamma0 is not None:
                eta = eta + Z @ gamma0[0]
            if off is not None:
                eta = eta + off
            mu = np.exp(np.minimum(eta, 30.0))
            new = float(estimate_theta(t(y), t(mu), w, torch.tensor([theta], dtype=torch.float64))[0])
            history.append(new)
            if abs(new - theta) <= self.theta_tol * theta:
                break
            theta = new
        at_bound = used >= 0.999e6
        if at_bound:  # no finite ML θ: the model the tuning scored (θ of the intercept model), said so
            import warnings

            result, used = solve(history[0], W0, gamma0), history[0]
            history.append(used)
            warnings.warn(
                "negative binomial theta ran to its upper bound (1e6): the per-spot coefficients absorb all the "
                f"overdispersion, so theta cannot be estimated at this smoothness; the fit uses the intercept model's "
                f"theta {used:.4g}, the one s3r tune scores trials with (raise lambda_smooth, or fix theta to choose another)",
                stacklevel=3,
            )
        return result, (used, history, at_bound)

    def _start_state(self, problem, start, penalties, weights) -> dict:
        from s3r.solver.flow_start import primal_start

        start = np.asarray(start, dtype=np.float64)
        if start.shape != problem.X.shape or not np.isfinite(start).all():
            raise S3RInputError(f"start must be a finite map of shape {problem.X.shape} (spots × features on the solver's scale); got {start.shape}")
        if not problem.gaussian:
            return {"W0": start[:, None, :]}
        lam, alpha, beta = penalties
        K = None if problem.operator is None else problem.operator.to_scipy()
        return primal_start(problem.X, problem.y, start, covariates=problem.covariates, K=K, lam=lam, alpha=alpha, beta=beta,
                            smooth=problem.smooth, penalty_factor=problem.penalty_factor, weights=weights)

    def _warm_state(self, n: int, p: int, Z) -> dict:
        prev = getattr(self, "_result", None)
        if not self.warm_start or prev is None or prev.W is None or prev.W.shape != (n, 1, p):
            return {}
        same_gamma = (prev.gamma is None) == (Z is None) and (Z is None or prev.gamma.shape[1] == Z.shape[1])
        return {
            "W0": prev.W,  # already on the solver's (standardised) scale
            "gamma0": prev.gamma.double().cpu().numpy() if same_gamma and prev.gamma is not None else None,
            "data_dual0": prev.data_dual,
            "dual0": prev.dual,
            "step0": prev.step,
        }

    # -- prediction ------------------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this S3R model is not fitted yet; call fit() first")

    def predict(self, X, covariates=None, offset=None) -> np.ndarray:
        """ŷ_i = ⟨x_i, W_i⟩ (+ covariates); count families return μ_i = exp(that + offset_i). Per-spot coefficients, so
        X must describe the fitted spots."""
        self._check_fitted()
        X = _as_matrix(X, "X")
        if X.shape != self.coef_.shape:
            raise S3RInputError(f"X has shape {X.shape} but the model was fitted on {self.coef_.shape} (spots × features); per-spot coefficients predict the fitted spots only")
        pred = np.einsum("np,np->n", X, self.coef_) + self.intercept_
        if getattr(self, "spatial_intercept_", None) is not None:
            pred = pred + self.spatial_intercept_
        if self.covariate_coef_.size:
            if covariates is None:
                raise S3RInputError("the model was fitted with covariates; pass them to predict()")
            pred = pred + np.asarray(covariates, dtype=np.float64).reshape(X.shape[0], -1) @ self.covariate_coef_
        if getattr(self, "family", "gaussian") != "gaussian":
            if offset is not None:
                pred = pred + finite_vector(offset, X.shape[0], "offset")
            return np.exp(np.minimum(pred, 30.0))
        return pred

    def _glm_family(self):
        from s3r.glm.families import get_family

        theta = getattr(self, "theta_", None)
        return get_family(self.family, theta if theta is not None or self.family != "negative_binomial" else 1.0)

    def score(self, X, y, sample_weight=None, covariates=None, offset=None) -> float:
        """Coefficient of determination R² (weighted when ``sample_weight`` is given); deviance explained for count families."""
        y = finite_vector(y, np.asarray(X).shape[0], "y")
        pred = self.predict(X, covariates, offset)
        w = np.ones_like(y) if sample_weight is None else finite_vector(sample_weight, y.shape[0], "sample_weight")
        if getattr(self, "family", "gaussian") != "gaussian":
            from s3r.glm.metrics import glm_scores

            fam = self._glm_family()
            t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 1))  # noqa: E731
            off = None if offset is None else t(finite_vector(offset, y.shape[0], "offset"))
            sc = glm_scores(fam, t(y), torch.log(t(pred)), torch.as_tensor(w), off)
            return float(sc["deviance_explained"][0])
        mean = np.average(y, weights=w)
        ss_res = float(np.sum(w * (y - pred) ** 2))
        ss_tot = float(np.sum(w * (y - mean) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


def _verbose_printer():
    def show(entry):
        print(
            f"iteration {entry['iteration']:>6}  objective {entry['objective'][0]:.6g}  "
            f"primal {entry['primal_residual'][0]:.2e}  dual {entry['dual_residual'][0]:.2e}",
            flush=True,
        )

    return show
