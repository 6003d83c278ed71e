"""One assembly of an S3R problem, shared by the final fit (``S3R.fit``) and cross-validation (``s3r.cv``).

Tuning must rank exactly the model that the final fit solves, so the design (feature scaling, an optional
spatially varying intercept column), the response scaling, the unpenalised covariates (intercept first), the
zero-response mask, the family, θ, the offset and the smoothness operator are all built here, once.

Two parameterisations of λ, α, β (``scaling``):

- ``standard`` (default): scale-free. The target is centred and divided by its standard deviation (gaussian),
  each feature is divided by its root mean square, the loss is the mean over the observed spots and every
  penalty is a mean over the spots:

      F(W) = (1/Σo) Σ_i o_i (ỹ_i − b − ⟨x̃_i, W̃_i⟩)² + (1/n) [λ S(W̃) + α Σ_ij |W̃_ij| + β √n Σ_j ‖W̃_:j‖₂]

  so a given λ, α, β means the same at 600 or 100,000 spots and for a target of scale 1 or 10⁴. Coefficients
  are reported on the original scale (W_ij = s_y W̃_ij / s_j).
- ``reference``: the S3R reference implementation's objective as it stands, (1/n) Σ o_i (y_i − ⟨x_i, W_i⟩)² +
  λ S(W) + α Σ|W| + β √n Σ_j ‖W_:j‖₂, on the raw data (``compat`` fits use it).

The mapping: the standard objective times Σo/n is the reference objective on (x̃, ỹ) with λ, α, β each multiplied
by Σo/n² — the solver always sees the reference form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from s3r.errors import S3RInputError
from s3r.graph import SpatialGraph, build_graph, neighbour_mean_operator, reference_knn_operator, validate_coords
from s3r.problem_data import family_and_offset, fixed_theta, response_scale, scaled_features, warn_if_compositional
from s3r.solver import SMOOTH_MODES, build_operator, resolve_device, resolve_dtype
from s3r.validation import finite_matrix, finite_vector

SCALINGS = ("standard", "reference")
PARAM_NAMES = ("lambda_smooth", "alpha", "beta")


def resolve_model(model: dict) -> dict:
    """Fill the model settings that depend on the parameterisation (``None`` = the parameterisation's default).

    ``standard``: intercept on, features scaled, zeros in the target are observations (mask off).
    ``reference`` (and ``compat``): no intercept, raw features, zeros masked — the reference implementation.
    """
    model = dict(model)
    scaling = model.get("scaling") or ("reference" if model.get("compat") else "standard")
    if scaling not in SCALINGS:
        raise S3RInputError(f"scaling must be one of {', '.join(SCALINGS)}; got {scaling!r}")
    standard = scaling == "standard"
    model["scaling"] = scaling
    for key, default in (("fit_intercept", standard), ("standardize", standard), ("mask_zero_response", not standard)):
        if model.get(key) is None:
            model[key] = default
    model.setdefault("spatial_intercept", False)
    if model["spatial_intercept"] is None:
        model["spatial_intercept"] = False
    return model


def smoothness_operator(smooth: str, coords, *, graph_method="knn", k=7, radius=None, max_edge_length=None, compat=False,
                        graph: SpatialGraph | None = None, dtype=torch.float64, device="cpu"):
    """The smoothness operator for these coordinates, and the graph it came from (None for the compat operator)."""
    if smooth not in SMOOTH_MODES:
        raise S3RInputError(f"smooth must be one of {', '.join(SMOOTH_MODES)}; got {smooth!r}")
    if compat and smooth != "graph_l1":
        raise S3RInputError("compat reproduces the reference implementation's graph_l1 (L mode) operator; use smooth='graph_l1' or drop compat")
    coords = validate_coords(coords, source="coordinates", min_spots=2)
    if smooth == "graph_l1" and compat:
        if coords.shape[0] < k + 1:
            raise S3RInputError(f"the reference kNN operator needs more than k={k} spots; got {coords.shape[0]}")
        return build_operator("graph_l1", matrix=reference_knn_operator(coords, k), device=device, dtype=dtype), None
    if graph is None:
        graph = build_graph(coords, method=graph_method, k=k, radius=radius, max_edge_length=max_edge_length)
    elif graph.n_nodes != coords.shape[0]:
        raise S3RInputError(f"the graph has {graph.n_nodes} nodes but there are {coords.shape[0]} spots")
    if smooth == "graph_l1":
        return build_operator("graph_l1", matrix=neighbour_mean_operator(graph), device=device, dtype=dtype), graph
    return build_operator(smooth, edges=graph.edges, edge_weights=graph.weights, n_nodes=graph.n_nodes, device=device, dtype=dtype), graph


@dataclass
class Problem:
    """Everything a solve needs, on the solver's scale, and the maps back to the user's scale."""

    X: np.ndarray | None  # (n, p_s) solver design: features ÷ x_scale, then the spatial-intercept column if any
    # (None once released: :meth:`without_design`)
    y: np.ndarray  # (n,) solver response
    coords: np.ndarray
    smooth: str
    operator: object
    graph: SpatialGraph | None
    covariates: np.ndarray | None  # (n, q) unpenalised: intercept column first when fit_intercept
    x_scale: np.ndarray  # (p_s,)
    y_center: float
    y_scale: float
    n_features: int  # the user's features (p); p_s = p + spatial_intercept
    scaling: str = "standard"
    fit_intercept: bool = True
    spatial_intercept: bool = False
    mask_zero_response: bool = False
    penalty_factor: np.ndarray | None = None  # (p_s,)
    family: str = "gaussian"
    theta: float | None = None
    offset: np.ndarray | None = None
    dtype: torch.dtype = torch.float64
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    nonzero: np.ndarray | None = None  # (n,) y != 0 on the user's scale, for the mask

    @property
    def n_spots(self) -> int:
        return self.y.shape[0]

    def without_design(self) -> "Problem":
        """This problem without its design (``X`` None): what a fitted :class:`~s3r.S3R` keeps as ``problem_``. The
        design is a float64 copy of the user's features (0.8 GB at 10⁵ spots × 1,000) that only the solve reads;
        the maps back to the user's scale, the mask, the graph and the operator stay (small beside it)."""
        from dataclasses import replace

        return replace(self, X=None)

    @classmethod
    def from_arrays(cls, X, y, coords, *, covariates=None, model: dict | None = None, dtype="float32", device="cpu", offset=None,
                    penalty_factor=None) -> "Problem":
        return assemble(X, y, coords, model=dict(model or {}), covariates=covariates, offset=offset, penalty_factor=penalty_factor,
                        dtype=dtype, device=device)

    @classmethod
    def from_data(cls, data, *, model: dict | None = None, dtype="float32", device="cpu", offset=None) -> "Problem":
        return cls.from_arrays(data.X, data.y, data.coords, covariates=data.covariates, model=model, dtype=dtype, device=device, offset=offset)

    @property
    def gaussian(self) -> bool:
        return self.family == "gaussian"

    def glm_family(self):
        from s3r.glm.families import get_family

        return get_family(self.family, self.theta)

    # -- the mask -----------------------------------------------------------------------------------------
    def free_rows(self, heldout=None) -> np.ndarray:
        """1 where a spot's coefficients may move: the y == 0 mask (gaussian, on request) on training spots only."""
        if not (self.mask_zero_response and self.gaussian):
            return np.ones(self.n_spots)
        held = np.zeros(self.n_spots, dtype=bool) if heldout is None else np.asarray(heldout, dtype=bool)
        return (self.nonzero | held).astype(np.float64)

    # -- parameters ---------------------------------------------------------------------------------------
    def penalty_multiplier(self, weights=None) -> float:
        """Factor from the user's α, β (and λ for the 1-homogeneous smoothness modes) to the solver's.

        Standard scaling: Σo/n² (mean loss over observed spots against means of penalties over all spots), times
        t = s_y(training spots) / s_y(all spots). The response was divided by s_y(all spots) once; scaling the
        1-homogeneous penalties by t makes the solution exactly that of a response standardised on the training
        spots alone, so a held-out response never enters its own prediction, not even through the scale.
        """
        if self.scaling == "reference":
            return 1.0
        n = self.n_spots
        o = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        return max(float(o.sum()), 1e-300) / float(n) ** 2 * self._scale_ratio(o)

    def _scale_ratio(self, o: np.ndarray) -> float:
        if not (self.gaussian and self.scaling == "standard") or o.sum() <= 0:
            return 1.0
        y = self.y  # (y − c)/s_y(all): the ratio of spreads is the same on this scale
        if self.fit_intercept:
            mean = float(np.sum(o * y) / o.sum())
            spread = float(np.sqrt(np.sum(o * (y - mean) ** 2) / o.sum()))
        else:
            spread = float(np.sqrt(np.sum(o * y**2) / o.sum()))
        return spread if spread > 0 else 1.0

    def solver_penalties(self, lambda_smooth, alpha, beta, weights=None):
        c = self.penalty_multiplier(weights)
        # λ tr(WᵀLW) is 2-homogeneous: it takes the spot-count factor but not the response-scale ratio
        c_lam = c / self._scale_ratio(np.ones(self.n_spots) if weights is None else np.asarray(weights, dtype=np.float64)) \
            if self.smooth == "quadratic" and self.scaling == "standard" else c
        as_arr = lambda v, f: np.asarray(v, dtype=np.float64) * f  # noqa: E731
        return as_arr(lambda_smooth, c_lam), as_arr(alpha, c), as_arr(beta, c)

    # -- back to the user's scale -------------------------------------------------------------------------
    def coefficients(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Solver W (n, [B,] p_s) → feature coefficients (n, [B,] p) and the spatial intercept map (n, [B]) or None."""
        W = np.asarray(W, dtype=np.float64)
        coef = W * (self.y_scale / self.x_scale)
        p = self.n_features
        return coef[..., :p], (coef[..., p] if self.spatial_intercept else None)

    def covariate_coefficients(self, gamma) -> tuple[np.ndarray, np.ndarray]:
        """Solver γ (…, q) → (intercept (…), covariate coefficients (…, q')) on the user's scale."""
        if gamma is None:
            return np.asarray(self.y_center), np.zeros(0)
        g = np.asarray(gamma, dtype=np.float64) * self.y_scale
        if self.fit_intercept:
            return g[..., 0] + self.y_center, g[..., 1:]
        return np.full(g.shape[:-1], self.y_center) if g.ndim > 1 else np.asarray(self.y_center), g

    def to_user_loss(self, loss):
        """Held-out loss on the target's own scale (MSE in y's units²; deviances are scale-free already)."""
        return np.asarray(loss, dtype=np.float64) * (self.y_scale**2 if self.gaussian else 1.0)

    # -- the intercept-only model -------------------------------------------------------------------------
    def null_gamma(self, weights=None) -> np.ndarray | None:
        """(q,) covariate coefficients (solver scale) of the covariates-only model fitted on ``weights``; None
        without covariates. The yardstick of tuning, and where every solve starts its covariates."""
        Z = self.covariates
        if Z is None:
            return None
        n = self.n_spots
        o = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        off = np.zeros(n) if self.offset is None else self.offset
        if self.gaussian:
            from s3r.solver.constant_start import covariate_fit

            return covariate_fit(Z, self.y - off, o)
        gamma = np.zeros(Z.shape[1])
        if self.fit_intercept:
            mean = float(np.sum(o * self.y) / max(np.sum(o), 1e-300))
            gamma[0] = np.log(max(mean, 1e-12)) - float(np.sum(o * off) / max(np.sum(o), 1e-300))
        if self.fit_intercept and not np.any(o * self.y > 0):
            return gamma  # no counts on these spots: the ML intercept is −∞, and the floor above stands in for it
        # the solver's own covariate fit at W = 0 (damped Newton, capped steps), from the log-mean start
        from s3r.solver.glm_loss import GLMLoss

        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        loss = GLMLoss(torch.zeros((n, 1), dtype=torch.float64), t(self.y).view(-1, 1), t(o).view(-1, 1), t(Z),
                       self.glm_family(), t(off).view(-1, 1))
        fitted, _ = loss.profile_covariates(torch.zeros((n, 1, 1), dtype=torch.float64), t(gamma).view(1, -1), max_newton=100)
        return fitted[0].numpy()

    def null_eta(self, weights=None) -> np.ndarray:
        """Linear predictor (solver scale, offset included) of the covariates-only model fitted on ``weights``."""
        off = np.zeros(self.n_spots) if self.offset is None else self.offset
        gamma = self.null_gamma(weights)
        return off.copy() if gamma is None else self.covariates @ gamma + off

    def spatial_trend(self) -> "Problem":
        """The same problem without its features: only a spatially varying intercept, held by the smoothness term.

        The second yardstick of tuning (every family; for the count families the trend is a smooth map of the log
        mean, the offset kept): a target with any spatial pattern is predicted by a smooth map
        of itself, and a spatially varying coefficient can mimic that map through any feature that is non-zero
        there (GWR's classic false positive). Features show an effect only when they beat this trend too.
        """
        from dataclasses import replace

        return replace(self, X=np.ones((self.n_spots, 1)), x_scale=np.ones(1), n_features=0, spatial_intercept=True,
                       penalty_factor=np.zeros(1))

    def null_gradient(self, weights=None) -> np.ndarray:
        """(n, p_s) gradient of the solver's data fit at W = 0 (covariates at their optimum), masked rows zero."""
        if self.X is None:
            raise S3RInputError("this problem's design was released after the fit (S3R.problem_); assemble it again "
                                "(s3r.problem.assemble) for its natural scales or gradient")
        n = self.n_spots
        o = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        eta = self.null_eta(o)
        if self.gaussian:
            d = eta - self.y
        else:
            fam = self.glm_family()
            d = fam.gradient(torch.as_tensor(self.y.reshape(-1, 1)), torch.as_tensor(eta.reshape(-1, 1))).numpy().ravel()
        d = (2.0 / n) * o * self.free_rows() * d
        return d[:, None] * self.X

    # -- natural scales of λ, α, β ------------------------------------------------------------------------
    def natural_scales(self, weights=None) -> dict:
        """Data-driven scales (user units) for the search, as glmnet's λ_max is for the lasso.

        ``alpha`` and ``beta``: the smallest α and β that zero every coefficient of the spatially constant model
        (λ → ∞; exact, from the optimality conditions at W = 0 — the gradient pooled over each connected part of
        the graph — when no spots are fixed at zero by the y = 0 mask), the
        threshold that smoothing makes relevant — with smoothing, whole regions share one gradient.
        ``alpha_zero`` and ``beta_zero``: the same thresholds at λ = 0 (a maximum over single spots), above
        which W = 0 is optimal for every λ; they are 10–100× larger on spatial data, so a search relative to
        them spends most trials on empty maps. ``lambda_smooth``: the λ beyond which the smoothness term alone
        holds every map spatially constant at W = 0 (a min-norm edge flow absorbing the gradient's spatial
        variation; an upper bound on the exact threshold).
        """
        G = self.null_gradient(weights)
        n = self.n_spots
        pf = np.ones(G.shape[1]) if self.penalty_factor is None else self.penalty_factor
        pen = pf > 0
        one = np.ones(1)
        c_lam, c, _ = (float(v[0]) for v in self.solver_penalties(one, one, one, weights))
        comps = self._components()
        if pen.any():
            alpha_zero = float(np.max(np.abs(G[:, pen]) / pf[pen]))
            beta_zero = float(np.max(np.linalg.norm(G[:, pen], axis=0) / pf[pen]) / np.sqrt(n))
            # per component c, with λ → ∞ each map is one value w_c: its gradient g_c = Σ_{i∈c} G_i, its penalties
            # α n_c |w_c| and β √n (Σ_c n_c w_c²)^½, so zero is optimal iff |g_c| ≤ α n_c, resp. (Σ_c g_c²/n_c)^½ ≤ β √n
            g = np.stack([G[rows][:, pen].sum(axis=0) for rows in comps]) / pf[pen]  # (components, p_pen)
            size = np.array([rows.sum() for rows in comps], dtype=np.float64)[:, None]
            alpha = float(np.max(np.abs(g) / size))
            beta = float(np.max(np.sqrt(np.sum(g**2 / size, axis=0))) / np.sqrt(n))
        else:
            alpha_zero = beta_zero = alpha = beta = 0.0
        lam = self._smooth_scale(G)
        tiny = 1e-12
        return {"lambda_smooth": max(lam / c_lam, tiny), "alpha": max(alpha / c, tiny), "beta": max(beta / c, tiny),
                "alpha_zero": max(alpha_zero / c, tiny), "beta_zero": max(beta_zero / c, tiny)}

    def _components(self) -> list[np.ndarray]:
        """Boolean rows of each connected component of the graph (one for the whole section without a graph):
        with λ → ∞ a map is constant on each component, not across them."""
        if self.graph is None:
            return [np.ones(self.n_spots, dtype=bool)]
        n_comp, labels = self.graph.components()
        return [labels == c for c in range(n_comp)]

    def _smooth_scale(self, G: np.ndarray) -> float:
        if self.operator is None:
            return 0.0
        K = self.operator.to_scipy()
        if self.smooth == "quadratic":
            # λ tr(WᵀLW) against the data curvature (2/n)‖x_i‖²: at this λ the smoothing length reaches the
            # section's size (diffusion over ~n spots), i.e. the map is close to constant
            deg = np.asarray(abs(K).T @ abs(K) @ np.ones(K.shape[1])).ravel()
            x2 = np.mean(np.sum(self.X**2, axis=1))
            return float(x2 / max(np.mean(deg), 1e-300))
        return _min_norm_flow_bound(K, G)


def _min_norm_flow_bound(K: sp.csr_matrix, G: np.ndarray) -> float:
    """max_j ‖K φ_j‖∞ with (KᵀK) φ_j = G_:j minus its mean per connected part: an edge dual that absorbs the spatial
    variation of the gradient (:class:`~s3r.solver.constant_start.FlowSolver`, all columns at once: the Jacobi CG it
    replaces needed its 3,000-iteration cap at 10⁵ spots, 5.5 min of an ``s3r tune`` set-up; benchmarks/README.md,
    session 15)."""
    from s3r.solver.constant_start import flow_solver

    flows = flow_solver(K)(G) if G.size else np.zeros((K.shape[0], 0))
    return float(np.max(np.abs(flows))) if flows.size else 0.0


def assemble(
    X, y, coords=None, *, model: dict, covariates=None, offset=None, penalty_factor=None, graph: SpatialGraph | None = None,
    dtype="float64", device="cpu", x_name: str = "X", y_name: str = "y",
) -> Problem:
    """Build the problem from user data and model settings (keys as in S3R's parameters / tune's ``model``)."""
    model = resolve_model(model)
    X = finite_matrix(X, x_name)
    n, p = X.shape
    y = finite_vector(y, n, y_name, x_name)
    if coords is None:
        raise S3RInputError("coordinates are required (one row per spot)")
    family, offset = family_and_offset(model, y, offset, y_name)
    gaussian = family == "gaussian"
    Xs, scale, pf, spatial_intercept = scaled_features(X, model, penalty_factor)
    warn_if_compositional(X, bool(model["fit_intercept"]) or spatial_intercept, x_name)
    y_center, y_scale = response_scale(y, model, gaussian)
    ys = (y - y_center) / y_scale

    cols = []
    if model["fit_intercept"]:
        cols.append(np.ones((n, 1)))
    if covariates is not None and np.size(covariates):
        cols.append(finite_matrix(np.asarray(covariates, dtype=np.float64).reshape(n, -1), "covariates"))
    Z = np.hstack(cols) if cols else None
    theta = fixed_theta(model, family, y, offset)

    dev, dt = resolve_device(device), resolve_dtype(dtype)
    smooth = model.get("smooth", "tv")
    operator, graph = smoothness_operator(
        smooth, coords, graph_method=model.get("graph", "knn"), k=int(model.get("k", 7) or 7), radius=model.get("radius"),
        max_edge_length=model.get("max_edge_length"), compat=bool(model.get("compat", False)), graph=graph, dtype=dt, device=dev,
    )
    xy = validate_coords(coords)
    return Problem(
        X=Xs, y=ys, coords=xy, smooth=smooth, operator=operator, graph=graph, covariates=Z, x_scale=scale,
        y_center=y_center, y_scale=y_scale, n_features=p, scaling=model["scaling"], fit_intercept=bool(model["fit_intercept"]),
        spatial_intercept=spatial_intercept, mask_zero_response=bool(model["mask_zero_response"]) and gaussian,
        penalty_factor=pf, family=family, theta=theta, offset=offset, dtype=dt, device=dev, nonzero=y != 0,
    )
