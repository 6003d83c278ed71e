"""The PDHG's step balancing and stall stop inside the working-set loop (issue 11, benchmarks/README.md session 14).

The realistic grid's three_regions σ 2 final fit (1,000 spots × 100 features, every feature non-zero, α and β ~4e-4 of
their natural scales) ran 40,000 iterations unconverged: the residual balancing halved τ at every fresh solve (the
fine level, the working set's re-solve at the tolerance, the float64 polish) down to 1/12 of the magnitude-matched
step, where the PDHG crawls, and a float32 stage that stalled was solved again by the working-set loop instead of
being handed to the polish."""

from __future__ import annotations

import numpy as np
import pytest

import s3r.solver.batch as batch
from s3r import S3R
from s3r.graph import knn_graph
from s3r.problem import assemble
from s3r.simulate import simulate
from s3r.solver import build_operator, solve_batch

from test_solver import cvxpy_optimum, small_problem


def test_a_stall_inside_the_working_set_loop_hands_over_to_the_polish(monkeypatch):
    """Asked for 1e-8 with working sets, float32 stalls at its floor: the working-set loop hands that state to the
    float64 polish (it used to solve it again in float32, with a fresh step balancing, until max_iter)."""
    coords, X, y = small_problem(seed=13, n=80)
    graph = knn_graph(coords, 5)
    kw = dict(smooth="tv", operator=build_operator("tv", edges=graph.edges, n_nodes=80), lambda_smooth=0.05, alpha=0.02,
              beta=0.01, device="cpu", working_set=True)
    expected = cvxpy_optimum(X, y, graph.incidence(), "tv", 0.05, 0.02, 0.01)
    monkeypatch.setattr(batch, "FLOAT32_TOL", 1e-8)  # below float32's reach on this problem
    res = solve_batch(X, y, **kw, tol=1e-8, dtype="mixed", max_iter=3000, stall=300)
    assert res.precision["float32_stalled"] is True and res.precision["polished"] is True
    assert res.precision["float32_iterations"][0] < 1500
    assert res.converged.all() and res.working_set["check_passed"]
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)


def test_a_dense_near_unpenalised_map_converges_without_the_step_running_away():
    """A small copy of the grid's case (1,000 spots × 50 features, its relative penalties, S3R's defaults: mixed,
    tol 1e-5, coarse-to-fine): converged within 12,000 iterations (measured 10,400; 20,040 before this session, and
    not converged in 31,730 with the stall stop but no step floor) with every feature non-zero."""
    sim = simulate("three_regions", n_spots=1000, n_features=50, sigma=2.0, seed=0, design="expression", geometry="uniform")
    scales = assemble(sim.X, sim.y, sim.coords, model={}).natural_scales()
    kw = {k: r * scales[k] for k, r in (("lambda_smooth", 0.087), ("alpha", 3.7e-4), ("beta", 6.0e-4))}
    model = S3R("tv", **kw, k=7).fit(sim.X, sim.y, sim.coords)
    assert model.report_["converged"] and model.report_["iterations"] <= 12_000
    assert np.all(np.any(model.coef_ != 0, axis=0))
