"""The deconvolution estimator (design.md §5): alternate exact block steps, stop on a certificate.

    min_{X, B, w}  −Σ_i log z_i + λ Σ_e w_e Σ_d |(A X)_ed|,   z_i = Σ_k S_ik (X Bᵀ)_ik

Each block step decreases the same objective (X-step to its residual tolerance, B-step monotone by
restart, w-step exactly), so the objective trace is the convergence record. The fit stops when its relative
change falls below ``tol`` while the last X-step met its own residual tolerance.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from s3r.deconv.bstep import solve_b_step
from s3r.deconv.init import initial_factors
from s3r.deconv.operators import Incidence, locality_order, relabel_edges
from s3r.deconv.scores import validate_scores
from s3r.deconv.simplex import check_floor
from s3r.deconv.wstep import check_weight_bounds, solve_w_step, uniform_weights
from s3r.deconv.xstep import edge_jumps, negative_log_evidence, solve_x_step, solve_x_step_soft, tv_penalty
from s3r.errors import S3RInputError
from s3r.graph import GRAPH_METHODS, SpatialGraph, build_graph
from s3r.solver.device import resolve_device, resolve_dtype

PENALTIES = ("tv", "soft_l1")
_WEIGHT_TRIGGER = 10.0
_WEIGHT_EVERY = 5
_X_CHUNKS = 5


class Deconvolution:
    """Spatially regularised cell-type deconvolution into D mixture components.

    After ``fit``: ``mixture_`` (X, spots × D), ``dictionary_`` (B, cell types × D), ``proportions_``
    (X Bᵀ), ``edge_weights_`` (one per edge of ``graph_``), ``objective_trace_`` and ``report_``.
    Scores are rescaled to sum 1 per spot, which shifts the objective by a constant and changes nothing else.
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
        penalty: str = "tv",
        delta: float = 1e-6,
        tol: float = 1e-5,
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
            raise S3RInputError(f"lambda must be ≥ 0, not {self.lambda_smooth}; pass e.g. --lambda 0.5")
        if self.penalty not in PENALTIES:
            raise S3RInputError(f"unknown penalty {self.penalty!r}; choose one of {', '.join(PENALTIES)}")
        if self.penalty == "soft_l1" and not self.delta > 0:
            raise S3RInputError(f"the soft_l1 penalty needs delta > 0, not {self.delta}")
        if self.graph not in GRAPH_METHODS:
            raise S3RInputError(f"unknown graph {self.graph!r}; choose delaunay (default) or mst")
        check_floor(self.eps, D, "mixtures (rows of X) with this many components")
        check_floor(self.eps, n_types, "dictionary columns over this many cell types")

    def _log(self, message: str) -> None:
        if self.verbose:
            print(f"[deconvolve] {message}", flush=True)

    # ------------------------------------------------------------------------------------------------
    def fit(self, scores, coords=None, *, graph: SpatialGraph | None = None, spot_names: Sequence[str] | None = None):
        """Fit to likelihood scores S (spots × cell types) on a graph built from ``coords`` or given."""
        started = time.perf_counter()
        values, names, cell_types = validate_scores(scores)
        if spot_names is not None:
            names = [str(s) for s in spot_names]
        n, K = values.shape
        self._check_parameters(n, K)
        if graph is None:
            if coords is None:
                raise S3RInputError("coordinates are required to build the spatial graph (or pass graph=)")
            graph = build_graph(coords, self.graph, k=self.k, max_edge_length=self.max_edge_length)
        if graph.n_nodes != n:
            raise S3RInputError(f"the graph has {graph.n_nodes} spots but the scores have {n} rows; align them")
        lam = float(self.lambda_smooth)
        learn = bool(self.learn_weights) and lam > 0 and graph.n_edges > 0
        feasibility = None
        if learn:
            feasibility = check_weight_bounds(
                graph.edges, n, self.w_min, self.w_max, node_names=names, graph_method=graph.method
            ).as_dict()
        device, dtype = resolve_device(self.device), resolve_dtype(self.dtype)
        D, eps = int(self.n_components), float(self.eps)

        # work in a cache-friendly spot order; everything is mapped back at the end
        order = locality_order(graph)
        edges, edge_position = relabel_edges(graph.edges, order)
        incidence = Incidence(n, edges, D, device, dtype)
        normalised = values / values.sum(axis=1, keepdims=True)
        S = torch.as_tensor(normalised[order].T.copy(), dtype=dtype, device=device)  # component-major (K, n)

        adjacency = graph.adjacency()[order][:, order]
        B_start, X_start = initial_factors(normalised[order], adjacency, D, eps, seed=self.seed)
        B = torch.as_tensor(B_start, dtype=dtype, device=device)
        X = torch.as_tensor(X_start, dtype=dtype, device=device)
        weights_np = uniform_weights(edges, n)
        weights = torch.as_tensor(weights_np, dtype=dtype, device=device)
        delta = float(self.delta) if self.penalty == "soft_l1" else 0.0

        def objective(X, B, weights):
            nll = float(negative_log_evidence(B.T @ S, X))
            pen = float(tv_penalty(incidence, X, lam * weights, delta)) if lam > 0 else 0.0
            return nll + pen, nll, pen

        total, nll, pen = objective(X, B, weights)
        trace = [total]
        steps: list[dict] = []
        self._log(f"{n} spots, {K} cell types, {D} components, {graph.n_edges} edges, device {device}; start {total:.6g}")
        dual, b_lipschitz = None, None
        converged, stop_reason = False, "max_iter"
        x_converged = False
        since_weights = 0
        w_steps = 0
        for iteration in range(1, int(self.max_iter) + 1):
            step_started = time.perf_counter()
            M = B.T @ S
            x_result, x_iterations, x_kept = None, 0, False
            for _ in range(_X_CHUNKS):  # an inexact primal–dual step may not descend yet: continue, else keep X
                if delta > 0:
                    x_result = solve_x_step_soft(M, X if x_result is None else x_result.mixture, incidence, lam * weights, eps, delta=delta, tol=self.x_tol, max_iter=self.x_max_iter)
                else:
                    x_start = X if x_result is None else x_result.mixture
                    x_result = solve_x_step(M, x_start, incidence, lam * weights, eps, dual=dual, tol=self.x_tol, max_iter=self.x_max_iter)
                    dual = x_result.dual
                x_iterations += x_result.iterations
                if objective(x_result.mixture, B, weights)[0] <= trace[-1] or x_result.converged:
                    break
            else:
                x_kept = True
            if not x_kept:
                X = x_result.mixture
            x_converged = x_result.converged
            b_result = solve_b_step(S, X, B, eps, lipschitz=b_lipschitz, tol=self.b_tol, max_iter=self.b_max_iter)
            B = b_result.point
            b_lipschitz = 0.5 * b_result.lipschitz
            total, nll, pen = objective(X, B, weights)
            change = abs(trace[-1] - total) / max(1.0, abs(total))
            since_weights += 1
            weights_updated = False
            if learn and (change <= self.tol * _WEIGHT_TRIGGER or since_weights >= _WEIGHT_EVERY):
                costs = edge_jumps(incidence, X, delta)
                weights_np = solve_w_step(costs.cpu().numpy(), incidence.node_edge_matrix(), self.w_min, self.w_max)
                weights = torch.as_tensor(weights_np, dtype=dtype, device=device)
                total, nll, pen = objective(X, B, weights)
                change = abs(trace[-1] - total) / max(1.0, abs(total))
                since_weights, weights_updated = 0, True
                w_steps += 1
            trace.append(total)
            steps.append(
                {
                    "iteration": iteration,
                    "objective": total,
                    "neg_log_likelihood": nll,
                    "penalty": pen,
                    "x_iterations": x_iterations,
                    "x_converged": x_result.converged,
                    "x_primal_residual": x_result.primal_residual,
                    "x_dual_residual": x_result.dual_residual,
                    "b_iterations": b_result.iterations,
                    "b_converged": b_result.converged,
                    "weights_updated": weights_updated,
                    "seconds": time.perf_counter() - step_started,
                }
            )
            self._log(
                f"iter {iteration}: objective {total:.8g} (rel change {change:.2e}), X-step {x_iterations} it "
                f"{'✓' if x_result.converged else '…'}, B-step {b_result.iterations} it{', w-step' if weights_updated else ''}"
            )
            if change <= self.tol and x_converged and (weights_updated or not learn):
                converged, stop_reason = True, "relative objective change and X-step residuals below tolerance"
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
        self.report_ = {
            "objective": trace[-1],
            "neg_log_likelihood": nll,
            "penalty": pen,
            "objective_trace": trace,
            "steps": steps,
            "iterations": len(steps),
            "converged": converged,
            "stop_reason": stop_reason,
            "seconds": time.perf_counter() - started,
            "feasibility": feasibility if learn else {"learned_weights": False},
            "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "n_spots": n,
            "n_cell_types": K,
            "n_components": D,
            "n_edges": graph.n_edges,
            "graph": graph.method,
            "lambda": lam,
            "penalty_kind": self.penalty,
            "eps": eps,
            "w_min": self.w_min,
            "w_max": self.w_max,
            "learn_weights": learn,
            "objective_note": "scores rescaled to sum 1 per spot (a constant shift of −Σ log z)",
        }
        return self

    def component_names(self) -> list[str]:
        return [f"component_{d + 1}" for d in range(self.n_components)]
