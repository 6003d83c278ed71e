"""The float32 → float64 handover of ``dtype="mixed"``: the polish starts where float32 stopped."""

from __future__ import annotations

import numpy as np
import pytest

import s3r.solver.working_set as working_set
from s3r.graph import knn_graph
from s3r.solver import build_operator, solve_batch

from test_solver import cvxpy_optimum, small_problem


@pytest.fixture
def blind_check(monkeypatch):
    """The certificate search gets no FISTA iterations: only z = 0 is tried, so a column that is zero thanks to the
    graph term is flagged although it is optimal at zero — what 300 iterations from z = 0 do on a 10⁵-spot graph."""
    check = working_set.check_excluded
    monkeypatch.setattr(working_set, "check_excluded", lambda *a, **k: check(*a, **{**k, "max_iter": 0}))


@pytest.fixture
def problem():
    """tv with a small group penalty: 4 of 20 columns non-zero, most zero columns zero only by the graph term."""
    coords, X, y = small_problem(seed=3, n=100, p=20)
    graph = knn_graph(coords, 5)
    kw = dict(smooth="tv", operator=build_operator("tv", edges=graph.edges, n_nodes=100), lambda_smooth=0.05, alpha=0.0,
              beta=0.002, device="cpu", working_set=True)
    return X, y, graph, kw


def test_a_warm_start_keeps_the_duals_of_its_zero_columns(problem, blind_check):
    """A solved state warm-starts a re-solve that stops at once. Its zero columns leave the first working set; when
    the check cannot certify them they re-enter with the warm start's dual (with a zero dual they came back rough
    and the re-solve took 2,670 iterations, about as many as the cold solve)."""
    X, y, graph, kw = problem
    ref = solve_batch(X, y, **kw, tol=1e-9, dtype="float64", max_iter=100_000)
    assert ref.converged.all() and ref.working_set["size"] == 20  # every column entered the set
    zero = (ref.W == 0).all(0).all(0).numpy()
    assert zero.sum() >= 10 and bool((ref.dual[:, :, zero] != 0).any())
    assert abs(ref.objective[0] - cvxpy_optimum(X, y, graph.incidence(), "tv", 0.05, 0.0, 0.002)) <= 1e-4 * ref.objective[0]
    warm = solve_batch(X, y, **kw, tol=1e-8, dtype="float64", W0=ref.W, gamma0=ref.gamma, dual0=ref.dual,
                       data_dual0=ref.data_dual, step0=ref.step)
    assert warm.working_set["sizes"][0] < 20 and warm.working_set["check_passed"]  # the zero columns left and came back
    assert warm.converged.all() and warm.iterations[0] <= 60
    assert abs(warm.objective[0] - ref.objective[0]) <= 1e-8 * ref.objective[0]


def test_the_float64_polish_starts_where_float32_stopped(problem, blind_check):
    """The mixed solve's polish (float32 to 1e-5, then float64 to 1e-6) begins at float32's residual and needs a
    fraction of the cold float64 iterations; the answer is the float64 optimum. Measured: polish 360 iterations,
    first check 3.5e-6, against 1,410 cold; with the zero columns' duals reset the polish restarted at 6e-3 and took
    1,900, more than the cold solve."""
    X, y, graph, kw = problem
    cold = solve_batch(X, y, **kw, tol=1e-6, dtype="float64", max_iter=100_000)
    mixed = solve_batch(X, y, **kw, tol=1e-6, dtype="mixed", max_iter=100_000)
    assert mixed.precision["polished"] is True and mixed.converged.all() and cold.converged.all()
    polish = int(mixed.iterations[0]) - mixed.precision["float32_iterations"][0]
    assert polish <= cold.iterations[0] / 3
    assert mixed.trace  # the polish's checks (every 100 iterations): never above a few times float32's stop
    for entry in mixed.trace:
        assert max(entry["primal_residual"][0], entry["dual_residual"][0]) <= 5e-5
    assert abs(mixed.objective[0] - cold.objective[0]) <= 1e-5 * cold.objective[0]
    reference = cvxpy_optimum(X, y, graph.incidence(), "tv", 0.05, 0.0, 0.002)
    assert abs(mixed.objective[0] - reference) <= 1e-4 * reference


def test_the_polished_result_reports_the_coarse_levels():
    """The coarse levels run in the float32 stage; the polished result carries their report."""
    coords, X, y = small_problem(seed=5, n=700, p=5)
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, n_nodes=700)
    res = solve_batch(X, y, smooth="tv", operator=op, lambda_smooth=0.002, alpha=0.0002, beta=0.0002, device="cpu", tol=1e-7,
                      dtype="mixed", coarsen=True, max_iter=100_000)
    assert res.precision["polished"] is True and res.converged.all() and bool((res.W != 0).any())
    assert res.multilevel is not None and res.multilevel["levels"]
    assert res.multilevel["levels"][-1]["aggregates"] < 700
