"""Cell-type proportions from spot counts and a reference, smoothed by graph TV with λ chosen by the data.

The components mode (s3r.deconv.model) explains per-spot scores by a learned dictionary that can drift away
from the cell types; here the unknowns are the proportions themselves (spots × cell types, rows on the
simplex), fitted with a count likelihood against the reference profiles (s3r.deconv.counts: per-spot
library size, per-gene platform effects, Poisson or negative binomial):

    min_{V, w}  Σ_i f_i(V_i)/ν + λ Σ_e w_e Σ_k |V_ki − V_kj|,   ν = median library size

V are transcript fractions (convex in them); cell fractions P ∝ V/s follow. For fixed w the problem is
convex and solved to a certificate (s3r.deconv.pstep); the weights follow the jumps of neighbourhood-smoothed
proportions (s3r.deconv.reweight, the default) or the seed's LP w-step (s3r.deconv.wstep, "at_least").
λ = "auto" picks λ from a path that starts at 0 by the likelihood of held-out genes (s3r.deconv.lambda_path):
the genes are split into folds, proportions are fitted on the others (warm started along the path), and each
fold's genes are predicted from them. A spatial term that only smooths noise away from the truth predicts
held-out genes worse, so λ = 0 wins whenever the term does not help.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from s3r.deconv.counts import (
    FAMILIES,
    bulk_start,
    CountTerm,
    cell_fractions,
    estimate_nb_theta,
    match_counts_reference,
    platform_effects,
    profiles_from_reference,
)
from s3r.deconv.graphs import combined_mst
from s3r.deconv.lambda_path import choose_on_window, lambda_evidence
from s3r.deconv.operators import Incidence, locality_order, relabel_edges
from s3r.deconv.pstep import PStepResult, solve_proportions
from s3r.deconv import reweight
from s3r.deconv.wstep import WEIGHT_CONSTRAINTS, solve_w_step, uniform_weights
from s3r.errors import S3RInputError
from s3r.graph import SpatialGraph, build_graph
from s3r.solver.device import resolve_device, resolve_dtype

GRAPHS = ("delaunay", "mst", "mst_combined", "knn")
DEFAULT_LAMBDAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class _Fit:
    fractions: torch.Tensor  # V (K, n)
    dual: torch.Tensor
    weights: torch.Tensor
    sigma: float | None
    result: PStepResult
    outer: int
    weight_changes: int
    seconds: float
    lam: float = 0.0


@dataclass
class _Start:
    """Where fits start (spots × types), whether that is the per-spot fit, and what it decided (family, θ, MST)."""

    fractions: np.ndarray
    per_spot: bool
    family: str
    theta: float | None
    overdispersion: float | None
    graph: SpatialGraph


class CellTypeProportions:
    """Cell-type proportions per spot (rows on the simplex) from counts and reference profiles.

    After ``fit``: ``proportions_`` (fractions of cells, spots × types), ``transcript_fractions_``,
    ``platform_effects_`` (per gene), ``lambda_`` (the λ used), ``cv_`` (held-out score per λ and fold, or
    None), ``edge_weights_``, ``graph_``, ``certificate_`` and ``report_``. ``lambda_smooth="auto"`` chooses
    λ among ``lambdas`` (0 included) by held-out genes. Same seed and thread count → same numbers.
    """

    def __init__(
        self,
        *,
        lambda_smooth="auto",
        lambdas=DEFAULT_LAMBDAS,
        n_folds: int = 3,
        family: str = "auto",
        theta: float | None = None,
        estimate_platform_effects: bool = True,
        prior_sd: float = 0.5,
        floor: float = 1e-4,
        graph: str = "delaunay",
        max_edge_length: float | None = None,
        mst_alpha: float = 1.0,
        k: int = 7,
        learn_weights: bool = True,
        weight_rule: str = "smoothed",
        w_min: float = 0.05,
        w_max: float = 1.0,
        weight_constraint: str = "at_least",
        tol: float = 1e-4,
        max_iter: int = 3000,
        max_outer: int = 8,
        weight_tol: float = 1e-5,
        cv_tol: float = 1e-3,
        cv_max_iter: int = 1000,
        cv_max_spots: int | None = 2000,
        cv_max_outer: int | None = 2,
        cv_patience: int | None = 2,
        gain_se: float = 1.0,
        device: str = "auto",
        dtype: str = "float64",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.lambda_smooth = lambda_smooth
        self.lambdas = lambdas
        self.n_folds = n_folds
        self.family = family
        self.theta = theta
        self.estimate_platform_effects = estimate_platform_effects
        self.prior_sd = prior_sd
        self.floor = floor
        self.graph = graph
        self.max_edge_length = max_edge_length
        self.mst_alpha = mst_alpha
        self.k = k
        self.learn_weights = learn_weights
        self.weight_rule = weight_rule
        self.w_min = w_min
        self.w_max = w_max
        self.weight_constraint = weight_constraint
        self.tol = tol
        self.max_iter = max_iter
        self.max_outer = max_outer
        self.weight_tol = weight_tol
        self.cv_tol = cv_tol
        self.cv_max_iter = cv_max_iter
        self.cv_max_spots = cv_max_spots
        self.cv_max_outer = cv_max_outer
        self.cv_patience = cv_patience
        self.gain_se = gain_se
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------------
    def _log(self, message: str) -> None:
        if self.verbose:
            print(f"[proportions] {message}", flush=True)

    def _candidates(self) -> list[float]:
        if isinstance(self.lambda_smooth, str):
            if self.lambda_smooth != "auto":
                raise S3RInputError(f"lambda must be a number ≥ 0 or 'auto', not {self.lambda_smooth!r}")
            values = sorted({float(v) for v in self.lambdas} | {0.0})
        else:
            values = [float(self.lambda_smooth)]
        if any(not np.isfinite(v) or v < 0 for v in values):
            raise S3RInputError(f"λ values must be finite and ≥ 0, got {values}; fix --lambda / --lambdas")
        return values

    def _check_parameters(self, n_genes: int) -> None:
        if self.family not in FAMILIES + ("auto",):
            raise S3RInputError(f"unknown family {self.family!r}; choose auto, poisson or nb (--family)")
        if self.graph not in GRAPHS:
            raise S3RInputError(f"unknown graph {self.graph!r}; choose one of {', '.join(GRAPHS)} (--graph)")
        if self.weight_rule not in reweight.WEIGHT_RULES:
            raise S3RInputError(f"unknown weight_rule {self.weight_rule!r}; choose one of {', '.join(reweight.WEIGHT_RULES)}")
        if self.weight_constraint not in WEIGHT_CONSTRAINTS:
            raise S3RInputError(f"unknown weight_constraint {self.weight_constraint!r}; choose one of {', '.join(WEIGHT_CONSTRAINTS)}")
        if not (0 <= self.w_min <= self.w_max) or not np.isfinite(self.w_max) or self.w_max <= 0:
            raise S3RInputError(f"edge-weight bounds must satisfy 0 ≤ w_min ≤ w_max, w_max > 0 (got {self.w_min}, {self.w_max}); fix --w-min/--w-max")
        if not (np.isfinite(self.gain_se) and self.gain_se >= 0):
            raise S3RInputError(f"gain_se must be a finite number ≥ 0 (0: the best mean held-out score), not {self.gain_se}")
        if not 0 <= self.floor < 1:
            raise S3RInputError(f"floor must lie in [0, 1), not {self.floor}")
        if self.theta is not None and not self.theta > 0:
            raise S3RInputError(f"theta (NB dispersion) must be > 0, not {self.theta}; omit it to estimate it")
        if isinstance(self.lambda_smooth, str) and self.lambda_smooth == "auto":
            folds = self.n_folds
            if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2 or folds > n_genes:
                raise S3RInputError(f"n_folds must be an integer in 2..{n_genes} (the genes), not {folds!r}; fix --folds")
            rounds = self.cv_max_outer
            if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1):
                raise S3RInputError(f"cv_max_outer must be a positive integer or None (the model's max_outer), not {rounds!r}")
            patience = self.cv_patience
            if patience is not None and (isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1):
                raise S3RInputError(f"cv_patience must be a positive integer or None (the whole path), not {patience!r}")

    # ------------------------------------------------------------------------------------------------
    def _solve(self, term: CountTerm, incidence: Incidence, node_edge, lam: float, start: _Fit | None,
               V0: torch.Tensor, tol: float, max_iter: int, max_outer: int | None = None,
               early_tol: float | None = None) -> _Fit:
        """Alternate the convex V-step and a weight update (``weight_rule``) until the weights settle
        (at most ``max_outer`` rounds; the model's ``max_outer`` when None). Under the smoothed rule V-steps
        whose weights will change stop at ``early_tol`` (``tol`` when None); the last one meets ``tol``."""
        started = time.perf_counter()
        learn = bool(self.learn_weights) and lam > 0 and incidence.n_edges > 0
        first = (V0, None, None, self._uniform) if start is None else (start.fractions, start.dual, start.sigma, start.weights)
        V, dual, sigma, weights = first
        previous_lam = getattr(start, "lam", None)
        if previous_lam is not None and previous_lam > 0 and lam > 0 and dual is not None:
            dual = dual * (lam / previous_lam)  # the dual box scales with λ
        changes, outer = 0, 0
        smoother = self._smoother(node_edge) if learn and self.weight_rule == "smoothed" else None
        rounds, step_tol = int(self.max_outer if max_outer is None else max_outer), tol
        for outer in range(1, rounds + 1):
            last = smoother is None or outer >= min(rounds, reweight.ROUNDS)
            step_tol = tol if last or early_tol is None else max(tol, early_tol)
            result = solve_proportions(term, V, incidence, lam * weights, dual=dual, sigma=sigma, tol=step_tol, max_iter=max_iter)
            V, dual, sigma = result.fractions, result.dual, result.sigma or sigma
            if not learn or smoother is not None and last:
                break
            if smoother is not None:  # the dual follows its box to the new weights
                candidate = reweight.smoothed_jump_weights(V, incidence, smoother, self._uniform)
                if reweight.weights_settled(candidate, weights):
                    break
                weights, dual, changes = candidate, reweight.transfer_dual(dual, weights, candidate), changes + 1
                continue
            costs = incidence.apply(V).abs().sum(dim=0).cpu().numpy()
            candidate = solve_w_step(costs, node_edge, self.w_min, self.w_max, self.weight_constraint)
            gain = lam * float(costs @ (weights.cpu().numpy() - candidate))
            if gain <= self.weight_tol * max(1.0, abs(result.objective)):
                break
            weights = torch.as_tensor(candidate, dtype=V.dtype, device=V.device)
            changes += 1
        if step_tol > tol:  # the weights settled after a loose V-step: finish it to the fit's tolerance
            result = solve_proportions(term, V, incidence, lam * weights, dual=dual, sigma=sigma, tol=tol, max_iter=max_iter)
            V, dual, sigma = result.fractions, result.dual, result.sigma or sigma
        return _Fit(V, dual, weights, sigma, result, outer, changes, time.perf_counter() - started, lam)

    def _smoother(self, node_edge):
        """The neighbourhood mean of this graph, built once per graph (the final fit's path reuses it)."""
        cached = getattr(self, "_smoother_cache", None)
        if cached is None or cached[0] is not node_edge:
            cached = self._smoother_cache = (node_edge, reweight.neighbourhood_mean(node_edge))
        return cached[1]

    def _term(self, Y: np.ndarray, profiles: np.ndarray, theta, scale: float) -> CountTerm:
        return CountTerm(
            torch.as_tensor(Y.T.copy(), dtype=self._dtype, device=self._device),
            torch.as_tensor(profiles, dtype=self._dtype, device=self._device),
            family=self._family, theta=theta, scale=scale,
        )

    # ------------------------------------------------------------------------------------------------
    def fit(self, counts, reference, coords=None, *, graph: SpatialGraph | None = None,
            source_counts: str = "counts", source_reference: str = "reference"):
        """Fit to counts (spots × genes) with reference means per cell (cell types × genes)."""
        started = time.perf_counter()
        data = match_counts_reference(counts, reference, source_counts=source_counts, source_reference=source_reference)
        Y, M = data.counts, data.reference
        n, G = Y.shape
        K = M.shape[0]
        self._check_parameters(G)
        candidates = self._candidates()
        self._device, self._dtype = resolve_device(self.device), resolve_dtype(self.dtype)
        gamma = platform_effects(Y, M, prior_sd=self.prior_sd) if self.estimate_platform_effects else np.ones(G)
        profiles, sizes = profiles_from_reference(M, gamma, self.floor)
        scale = float(np.median(Y.sum(axis=1)))
        graph = self._spatial_graph(coords, graph, n)
        start = self._per_spot_start(Y, profiles, sizes, scale, coords, graph)
        graph, family, theta = start.graph, start.family, start.theta
        self._family = family

        order = locality_order(graph)
        edges, edge_position = relabel_edges(graph.edges, order)
        incidence = Incidence(n, edges, K, self._device, self._dtype)
        node_edge = incidence.node_edge_matrix()
        self._uniform = torch.as_tensor(uniform_weights(edges, n), dtype=self._dtype, device=self._device)
        Y_ordered = Y[order]
        V_start = torch.as_tensor(start.fractions[order].T.copy(), dtype=self._dtype, device=self._device)
        self._log(f"{n} spots, {K} cell types, {G} genes, {graph.n_edges} {graph.method} edges on {self._device}")

        try:  # the neighbourhood-mean cache lives for this fit only: it is a working buffer, not learned state
            if len(candidates) > 1:
                lam, cv_table, cv_spots = choose_on_window(
                    self, candidates, Y_ordered, M, gamma, sizes, scale, theta, coords, order, edges, incidence, node_edge, V_start)
            else:
                lam, cv_table, cv_spots = candidates[0], None, 0

            term = self._term(Y_ordered, profiles, theta, scale)
            # from the bulk start the path goes through λ = 0; from the per-spot fit (λ = 0 already, to cv_tol) a
            # λ > 0 starts at once: its first solve has uniform weights, so it is convex and the start only saves
            # iterations, and the λ = 0 solve on every spot was the costliest part of large fits
            path = [lam] if lam > 0 and start.per_spot else ([0.0, lam] if lam > 0 else [0.0])
            fit = None
            for value in path:
                fit = self._solve(term, incidence, node_edge, value, fit, V_start, self.tol, self.max_iter,
                                  early_tol=self.tol * reweight.EARLY_TOL_FACTOR)
        finally:
            self.__dict__.pop("_smoother_cache", None)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(n)
        V = fit.fractions.T.cpu().numpy()[inverse]
        V = np.clip(V, 0.0, None)
        V /= V.sum(axis=1, keepdims=True)
        edge_weights = np.empty(graph.n_edges)
        edge_weights[edge_position] = fit.weights.cpu().numpy() if graph.n_edges else np.zeros(0)
        self._store(data, V, sizes, gamma, graph, edge_weights, fit, start, lam, cv_table, cv_spots, candidates, scale)
        self.report_["seconds"] = time.perf_counter() - started
        self._log(
            f"λ = {lam:g}: {'converged' if fit.result.converged else 'stopped at max_iter'} after "
            f"{fit.result.iterations} iterations (residuals {fit.result.primal_residual:.1e}, "
            f"{fit.result.dual_residual:.1e}, gap {fit.result.gap:.1e}); {self.report_['seconds']:.1f} s"
        )
        return self

    def _spatial_graph(self, coords, graph: SpatialGraph | None, n: int) -> SpatialGraph | None:
        """The given graph, or one built from coordinates (None for the combined MST, built after the per-spot fit)."""
        if graph is None:
            if coords is None:
                raise S3RInputError("coordinates are required to build the spatial graph (or pass graph=)")
            if self.graph in ("delaunay", "mst", "knn"):
                graph = build_graph(coords, self.graph, k=self.k, max_edge_length=self.max_edge_length)
        if graph is not None and graph.n_nodes != n:
            raise S3RInputError(f"the graph has {graph.n_nodes} spots but the counts have {n} rows; align them")
        return graph

    def _per_spot_start(self, Y, profiles, sizes, scale, coords, graph) -> _Start:
        """Per-spot fit first (λ = 0) when it is needed: the start of every path, NB's θ, the family's choice and
        the combined-distance MST. Otherwise every spot starts at the pseudo-bulk composition."""
        n, K = Y.shape[0], profiles.shape[0]
        start_V = np.tile(bulk_start(Y, profiles), (n, 1))
        family, theta, overdispersion = self.family, self.theta, None
        if not (graph is None or family == "auto" or family == "nb" and theta is None):
            return _Start(start_V, False, family, theta, None, graph)
        empty = Incidence(n, np.zeros((0, 2), dtype=np.int64), K, self._device, self._dtype)
        self._uniform = torch.zeros(0, dtype=self._dtype, device=self._device)
        term = CountTerm(
            torch.as_tensor(Y.T.copy(), dtype=self._dtype, device=self._device),
            torch.as_tensor(profiles, dtype=self._dtype, device=self._device), family="poisson", scale=scale,
        )
        V0 = torch.as_tensor(start_V.T.copy(), dtype=self._dtype, device=self._device)
        per_spot = solve_proportions(term, V0, empty, self._uniform, tol=self.cv_tol, max_iter=self.cv_max_iter)
        start_V = per_spot.fractions.T.cpu().numpy()
        if family != "poisson":
            means = (start_V @ profiles) * Y.sum(axis=1, keepdims=True)
            theta = estimate_nb_theta(Y, means) if theta is None else float(theta)
            overdispersion = float((means**2).sum() / theta / means.sum())
            self._log(f"NB dispersion θ = {theta:.4g} (moments of the per-spot Poisson fit); extra-Poisson "
                      f"variance {overdispersion:.3g}× the Poisson variance")
        if family == "auto":
            # the extra-Poisson variance μ²/θ against the Poisson μ: NB only where it dominates
            family = "nb" if overdispersion is not None and overdispersion > 1.0 else "poisson"
            theta = theta if family == "nb" else None
        if graph is None:
            graph = combined_mst(coords, cell_fractions(start_V, sizes), self.mst_alpha, self.max_edge_length)
        return _Start(start_V, True, family, theta, overdispersion, graph)

    def _store(self, data, V, sizes, gamma, graph, edge_weights, fit: _Fit, start: _Start, lam, cv_table, cv_spots,
               candidates, scale) -> None:
        self.spot_names_ = data.spots
        self.cell_types_ = data.cell_types
        self.genes_ = data.genes
        self.transcript_fractions_ = V
        self.proportions_ = cell_fractions(V, sizes)
        self.cell_sizes_ = sizes
        self.platform_effects_ = gamma
        self.lambda_ = lam
        self.theta_ = start.theta
        self.cv_ = cv_table
        self.edge_weights_ = edge_weights
        self.graph_ = graph.with_weights(edge_weights)
        self.certificate_ = fit.result.certificate()
        self.report_ = {
            "mode": "proportions",
            "family": start.family,
            "family_choice": "given" if self.family != "auto" else "NB when the extra-Poisson variance exceeds the Poisson variance",
            "overdispersion": start.overdispersion,
            "theta": start.theta,
            "lambda": lam,
            "lambda_choice": "held-out genes" if cv_table is not None else "given",
            "candidates": sorted(set(cv_table["lambda"])) if cv_table is not None else candidates,
            "cv_spots": cv_spots,
            "cv_patience": self.cv_patience,
            "cv_max_outer": self.cv_max_outer,
            "gain_se": self.gain_se,
            "n_spots": V.shape[0],
            "n_genes": len(data.genes),
            "n_cell_types": V.shape[1],
            "graph": graph.method,
            "n_edges": graph.n_edges,
            "learned_weights": bool(self.learn_weights) and lam > 0 and graph.n_edges > 0,
            "weight_rule": self.weight_rule,
            "weight_constraint": self.weight_constraint if self.weight_rule == "lp" else None,  # the LP w-step's own bound
            "weight_changes": fit.weight_changes,
            "outer_iterations": fit.outer,
            "certificate": self.certificate_,
            "converged": self.certificate_["converged"],
            "library_size_median": scale,
            "device": str(self._device),
            "dtype": str(self._dtype).replace("torch.", ""),
        }

    def summary_of_choice(self) -> pd.DataFrame:
        """Per λ: mean and standard error over folds of the held-out score, and which one was chosen."""
        return lambda_evidence(self.cv_, self.lambda_)
