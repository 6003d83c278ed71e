"""The deconvolution estimator: alternating block steps that each lower one objective.

    min_{X, B, w}  −Σ_i log z_i + λ Σ_e w_e Σ_d |(A X)_ed|,   z_i = Σ_k S_ik (X Bᵀ)_ik

The X-step is accepted only when it lowers the objective (a capped primal–dual run may not have yet), the
B-step is monotone by restart and the w-step is exact, so the objective trace never goes up. An LP costs as
much as hundreds of X iterations at 10⁵ spots, so the w-step runs when (X, B) have settled for the current
weights or every few iterations, and the fit stops only after a w-step that changed the objective by less
than ``tol`` (relative), with the last X-step's residuals below ``x_tol``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from s3r.deconv.bstep import solve_b_step
from s3r.deconv.condat_vu import default_dual_step
from s3r.deconv.init import initial_factors
from s3r.deconv.operators import Incidence, locality_order, relabel_edges
from s3r.deconv.scores import validate_scores
from s3r.deconv.simplex import check_floor
from s3r.deconv.wstep import WEIGHT_CONSTRAINTS, check_weight_bounds, solve_w_step, uniform_weights
from s3r.deconv.xstep import (
    XStepResult,
    edge_jumps,
    negative_log_evidence,
    solve_x_step,
    solve_x_step_soft,
    tv_penalty,
)
from s3r.errors import S3RInputError
from s3r.graph import GRAPH_METHODS, SpatialGraph, build_graph
from s3r.solver.device import resolve_device, resolve_dtype

PENALTIES = ("tv", "soft_l1")
# the w-step also runs at least every this many iterations, so weights follow X even while it still moves
_WEIGHT_EVERY = 5
# capped X-step runs tried before an X-step that does not lower the objective is discarded
_X_CHUNKS = 5
# new edge weights are taken only if they lower the objective by this fraction of tol (relative)
_WEIGHT_GAIN = 0.1
# dual step of warm-started X-steps, in units of the median edge cost λw: with a dual already near its
# optimum, a larger σ (so smaller primal steps) avoids a transient rise of the objective after each B- or
# w-step; residual balancing, which suits a cold start, would drive σ down (30% fewer X iterations on DLPFC)
_WARM_SIGMA = 5.0


@dataclass
class _Problem:
    """Everything fixed during a fit, in the solver's spot order and layout (component-major)."""

    scores: torch.Tensor  # (K, n), rows of S rescaled to sum 1
    incidence: Incidence
    lam: float
    delta: float  # 0 for exact TV
    eps: float

    def objective(self, X: torch.Tensor, B: torch.Tensor, weights: torch.Tensor) -> tuple[float, float, float]:
        nll = float(negative_log_evidence(B.T @ self.scores, X))
        penalty = float(tv_penalty(self.incidence, X, self.lam * weights, self.delta)) if self.lam > 0 else 0.0
        return nll + penalty, nll, penalty


class Deconvolution:
    """Spatially regularised cell-type deconvolution into D mixture components.

    After ``fit``: ``mixture_`` (X, spots × D), ``dictionary_`` (B, cell types × D), ``proportions_``
    (X Bᵀ), ``edge_weights_`` (one per edge of ``graph_``), ``objective_trace_``, ``n_iter_`` and
    ``report_``. Scores are rescaled to sum 1 per spot, which shifts the objective by a constant only.
    λ is in log-likelihood units per unit jump; with learned weights each spot's weights sum to 1.
    Results are bitwise reproducible for a seed on one machine with one thread count.
    """

    def __init__(
        self,
        n_components: int = 3,
        *,
        lambda_smooth: float = 10.0,
        graph: str = "delaunay",
        max_edge_length: float | None = None,
        k: int = 7,
        eps: float = 1e-3,
        w_min: float = 0.05,
        w_max: float = 1.0,
        learn_weights: bool = True,
        weight_constraint: str = "at_least",
        penalty: str = "tv",
        delta: float = 1e-6,
        tol: float = 1e-4,
        max_iter: int = 100,
        x_tol: float = 1e-4,
        x_max_iter: int = 200,
        b_tol: float = 1e-6,
        b_max_iter: int = 200,
        device: str = "auto",
        dtype: str = "float64",
        seed: int = 0,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.lambda_smooth = lambda_smooth
        self.graph = graph
        self.max_edge_length = max_edge_length
        self.k = k
        self.eps = eps
        self.w_min = w_min
        self.w_max = w_max
        self.learn_weights = learn_weights
        self.weight_constraint = weight_constraint
        self.penalty = penalty
        self.delta = delta
        self.tol = tol
        self.max_iter = max_iter
        self.x_tol = x_tol
        self.x_max_iter = x_max_iter
        self.b_tol = b_tol
        self.b_max_iter = b_max_iter
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.verbose = verbose

    # ------------------------------------------------------------------------------------------------
    def _check_parameters(self, n_spots: int, n_types: int) -> None:
        D = self.n_components
        if isinstance(D, bool) or not isinstance(D, (int, np.integer)) or D < 1:
            raise S3RInputError(f"n_components must be a positive integer, not {D!r}")
        if D > n_spots:
            raise S3RInputError(f"n_components={D} exceeds the {n_spots} spots; lower --components")
        if not np.isfinite(self.lambda_smooth) or self.lambda_smooth < 0:
            raise S3RInputError(f"lambda must be ≥ 0, not {self.lambda_smooth}; pass e.g. --lambda 10")
        if self.penalty not in PENALTIES:
            raise S3RInputError(f"unknown penalty {self.penalty!r}; choose one of {', '.join(PENALTIES)}")
        if self.penalty == "soft_l1" and not self.delta > 0:
            raise S3RInputError(f"the soft_l1 penalty needs delta > 0, not {self.delta}")
        if self.weight_constraint not in WEIGHT_CONSTRAINTS:
            raise S3RInputError(
                f"unknown weight_constraint {self.weight_constraint!r}; choose one of {', '.join(WEIGHT_CONSTRAINTS)}"
            )
        if self.graph not in GRAPH_METHODS:
            raise S3RInputError(f"unknown graph {self.graph!r}; choose delaunay (default) or mst")
        check_floor(self.eps, D, "mixtures (rows of X) with this many components")
        check_floor(self.eps, n_types, "dictionary columns over this many cell types")

    def _log(self, message: str) -> None:
        if self.verbose:
            print(f"[deconvolve] {message}", flush=True)

    def _x_step(self, problem: _Problem, X, B, weights, state: dict, current: float) -> tuple[torch.Tensor, XStepResult, int]:
        """(X, last run, iterations): continue capped runs until an iterate lowers the objective, else keep X."""
        M = B.T @ problem.scores
        costs = problem.lam * weights
        start, iterations = X, 0
        for _ in range(_X_CHUNKS):
            if problem.delta > 0:
                result = solve_x_step_soft(
                    M, start, problem.incidence, costs, problem.eps,
                    delta=problem.delta, tol=self.x_tol, max_iter=self.x_max_iter,
                )
            else:
                warm = state["dual"] is not None
                result = solve_x_step(
                    M, start, problem.incidence, costs, problem.eps,
                    dual=state["dual"], sigma=_WARM_SIGMA * default_dual_step(costs) if warm else None,
                    balance=not warm, tol=self.x_tol, max_iter=self.x_max_iter,
                )
                state["dual"] = result.dual
            iterations += result.iterations
            if result.converged:
                return result.mixture, result, iterations
            if result.best_mixture is not None and result.best_objective <= current:
                return result.best_mixture, result, iterations
            start = result.mixture
        return X, result, iterations

    # ------------------------------------------------------------------------------------------------
    def fit(self, scores, coords=None, *, graph: SpatialGraph | None = None, spot_names: Sequence[str] | None = None):
        """Fit to likelihood scores S (spots × cell types) on a graph built from ``coords`` or given."""
        started = time.perf_counter()
        values, names, cell_types = validate_scores(scores)
        if spot_names is not None:
            names = [str(s) for s in spot_names]
        n, K = values.shape
        self._check_parameters(n, K)
        graph = self._spatial_graph(coords, graph, n)
        lam = float(self.lambda_smooth)
        learn = bool(self.learn_weights) and lam > 0 and graph.n_edges > 0
        feasibility = self._feasibility(graph, n, names, learn)
        device, dtype = resolve_device(self.device), resolve_dtype(self.dtype)
        problem, order, edge_position, X, B, weights = self._start(values, graph, lam, device, dtype)
        node_edge = problem.incidence.node_edge_matrix() if learn else None

        total, nll, penalty = problem.objective(X, B, weights)
        trace, steps = [total], []
        self._log(f"{n} spots, {K} cell types, {self.n_components} components, {graph.n_edges} edges on {device}; "
                  f"objective {total:.8g}")
        state = {"dual": None}
        b_lipschitz = None
        converged, since_weights = False, 0
        for iteration in range(1, int(self.max_iter) + 1):
            step_started = time.perf_counter()
            X, x_result, x_iterations = self._x_step(problem, X, B, weights, state, trace[-1])
            b_result = solve_b_step(problem.scores, X, B, problem.eps, lipschitz=b_lipschitz, tol=self.b_tol, max_iter=self.b_max_iter)
            B, b_lipschitz = b_result.point, 0.5 * b_result.lipschitz  # let the step grow again next time
            total, nll, penalty = problem.objective(X, B, weights)
            change = abs(trace[-1] - total) / max(1.0, abs(total))
            since_weights += 1
            w_step = learn and (change <= self.tol or since_weights >= _WEIGHT_EVERY)
            weights_changed = False
            if w_step:
                since_weights = 0
                weights, weights_changed = self._w_step(problem, X, weights, node_edge, total)
                if weights_changed:
                    total, nll, penalty = problem.objective(X, B, weights)
                    change = abs(trace[-1] - total) / max(1.0, abs(total))
            trace.append(total)
            steps.append({
                "iteration": iteration, "objective": total, "neg_log_likelihood": nll, "penalty": penalty,
                "x_iterations": x_iterations, "x_converged": x_result.converged,
                "x_primal_residual": x_result.primal_residual, "x_dual_residual": x_result.dual_residual,
                "b_iterations": b_result.iterations, "b_converged": b_result.converged,
                "w_step": w_step, "weights_changed": weights_changed, "seconds": time.perf_counter() - step_started,
            })
            self._log(
                f"iteration {iteration}: objective {total:.8g} (relative change {change:.1e}); X-step {x_iterations} "
                f"iterations{'' if x_result.converged else ' (capped)'}, B-step {b_result.iterations}"
                f"{', w-step' if w_step else ''}{' (weights changed)' if weights_changed else ''}"
            )
            if change <= self.tol and x_result.converged and (w_step or not learn):
                converged = True
                break

        inverse = np.empty_like(order)
        inverse[order] = np.arange(n)
        edge_weights = np.empty(graph.n_edges)
        edge_weights[edge_position] = weights.cpu().numpy()
        self.mixture_ = X.T.cpu().numpy()[inverse]
        self.dictionary_ = B.cpu().numpy()
        self.proportions_ = self.mixture_ @ self.dictionary_.T
        self.edge_weights_ = edge_weights
        self.graph_ = graph.with_weights(edge_weights)
        self.spot_names_ = names
        self.cell_types_ = cell_types
        self.objective_trace_ = trace
        self.n_iter_ = len(steps)
        self.report_ = self._report(trace, nll, penalty, steps, converged, feasibility, device, dtype, graph, K, problem, learn)
        self.report_["seconds"] = time.perf_counter() - started
        return self

    def _spatial_graph(self, coords, graph: SpatialGraph | None, n: int) -> SpatialGraph:
        if graph is None:
            if coords is None:
                raise S3RInputError("coordinates are required to build the spatial graph (or pass graph=)")
            graph = build_graph(coords, self.graph, k=self.k, max_edge_length=self.max_edge_length)
        if graph.n_nodes != n:
            raise S3RInputError(f"the graph has {graph.n_nodes} spots but the scores have {n} rows; align them")
        return graph

    def _feasibility(self, graph: SpatialGraph, n: int, names, learn: bool) -> dict:
        """The w-step's feasibility; with the "equal" constraint checked before any work (a user error)."""
        degrees = np.bincount(np.asarray(graph.edges).ravel(), minlength=n)
        feasibility = {  # "at_least" is feasible on every graph (w ≡ w_max satisfies it)
            "learned_weights": learn, "constraint": self.weight_constraint, "feasible": True,
            "min_degree": int(degrees.min()) if n else 0, "max_degree": int(degrees.max()) if n else 0,
        }
        if learn and self.weight_constraint == "equal":
            feasibility = check_weight_bounds(
                graph.edges, n, self.w_min, self.w_max, node_names=names, graph_method=graph.method
            ).as_dict() | {"learned_weights": True, "constraint": "equal"}
        return feasibility

    def _start(self, values, graph: SpatialGraph, lam: float, device, dtype):
        """(problem, order, edge positions, X, B, weights) in a cache-friendly spot order (mapped back at the end)."""
        n, D = values.shape[0], int(self.n_components)
        order = locality_order(graph)
        edges, edge_position = relabel_edges(graph.edges, order)
        normalised = values / values.sum(axis=1, keepdims=True)
        problem = _Problem(
            scores=torch.as_tensor(normalised[order].T.copy(), dtype=dtype, device=device),
            incidence=Incidence(n, edges, D, device, dtype),
            lam=lam,
            delta=float(self.delta) if self.penalty == "soft_l1" else 0.0,
            eps=float(self.eps),
        )
        B_start, X_start = initial_factors(
            normalised[order], graph.adjacency()[order][:, order], D, problem.eps, seed=self.seed
        )
        B = torch.as_tensor(B_start, dtype=dtype, device=device)
        X = torch.as_tensor(X_start, dtype=dtype, device=device)
        weights = torch.as_tensor(uniform_weights(edges, n), dtype=dtype, device=device)
        return problem, order, edge_position, X, B, weights

    def _w_step(self, problem: _Problem, X, weights, node_edge, total: float) -> tuple[torch.Tensor, bool]:
        """The exact LP for the edge weights; its weights are taken only if they gain enough."""
        costs = edge_jumps(problem.incidence, X, problem.delta).cpu().numpy()
        candidate = solve_w_step(costs, node_edge, self.w_min, self.w_max, self.weight_constraint)
        gain = problem.lam * float(costs @ (weights.cpu().numpy() - candidate))
        # flat regions give many near-zero costs and so many equally good vertices; swapping between
        # them gains nothing and unsettles the X-step's dual, so only a real gain changes the weights
        if gain > _WEIGHT_GAIN * self.tol * max(1.0, abs(total)):
            return torch.as_tensor(candidate, dtype=weights.dtype, device=weights.device), True
        return weights, False

    def _report(self, trace, nll, penalty, steps, converged, feasibility, device, dtype, graph, K, problem, learn) -> dict:
        return {
            "objective": trace[-1],
            "neg_log_likelihood": nll,
            "penalty": penalty,
            "objective_trace": trace,
            "steps": steps,
            "iterations": len(steps),
            "converged": converged,
            "stop_reason": (
                "relative objective change below tol after a w-step, X-step residuals below x_tol"
                if converged
                else "max_iter reached"
            ),
            "seconds": None,
            "feasibility": feasibility,
            "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "n_spots": graph.n_nodes,
            "n_cell_types": K,
            "n_components": int(self.n_components),
            "n_edges": graph.n_edges,
            "graph": graph.method,
            "lambda": problem.lam,
            "penalty_kind": self.penalty,
            "eps": problem.eps,
            "w_min": self.w_min,
            "w_max": self.w_max,
            "learn_weights": learn,
            "objective_note": "scores rescaled to sum 1 per spot (shifts −Σ log z by a constant)",
        }

    def component_names(self) -> list[str]:
        return [f"component_{d + 1}" for d in range(self.n_components)]
