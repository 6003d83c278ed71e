"""The solve's large tensors are made once: no view of the caller's arrays, no second edges × p dual."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import s3r.solver.batch as batch_mod
import s3r.solver.working_set as ws_mod
from s3r.graph import knn_graph
from s3r.solver import build_operator, solve_batch
from s3r.solver.batch import _take_rows_, _tensor, _unpermute_rows_
from s3r.solver.datafit import SquaredLoss
from s3r.solver.penalties import GraphL1, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual
from s3r.solver.working_set import solve_working_set

from test_working_set import operator_for, wide_problem


def test_tensors_never_alias_the_callers_arrays():
    a = np.arange(12.0).reshape(4, 3)
    for dt in (torch.float64, torch.float32):
        T = _tensor(a, dt, "cpu")
        T.add_(100.0)
        assert a[0, 0] == 0.0 and float(T[0, 0]) == 100.0
    b = np.broadcast_to(np.arange(3.0), (4, 3))  # zero strides: must become a real array, not a tensor of four views of one row
    T = _tensor(b, torch.float64, "cpu")
    T[0, 0] = 7.0
    assert T[1, 0] == 0.0 and b[0, 0] == 0.0


def test_rows_go_back_in_place_block_by_block():
    rng = np.random.default_rng(0)
    T = torch.as_tensor(rng.normal(size=(50, 2, 7)))
    order = rng.permutation(50)
    expected = T.index_select(0, torch.as_tensor(np.argsort(order)))
    got = _unpermute_rows_(T.clone(), order, block_elems=30)  # 30 entries per block: several blocks of columns
    assert torch.equal(got, expected)


def test_an_owned_warm_dual_holds_the_result_and_equals_a_fresh_one(monkeypatch):
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    coords, X, y = wide_problem(seed=3)
    n, p = X.shape
    op, _ = operator_for("tv", coords)
    dt = torch.float64
    fit = SquaredLoss(torch.as_tensor(X), torch.as_tensor(y).view(n, 1), torch.ones((n, 1), dtype=dt), None)
    pen = SparseGroupLasso(torch.tensor([0.02]), torch.tensor([0.03]), torch.ones(p, dtype=dt), n, torch.ones((n, 1), dtype=dt))
    smooth = GraphL1(torch.tensor([0.05], dtype=dt))
    rng = np.random.default_rng(1)
    U0 = torch.as_tensor(rng.uniform(-0.05, 0.05, size=(op.shape[0], 1, p)))
    kw = dict(inner=primal_dual, tol=1e-7, max_iter=50_000)
    fresh = solve_working_set(fit, pen, smooth, op, torch.zeros((n, 1, p), dtype=dt), None, U0=U0.clone(), **kw)
    mine, start = U0.clone(), torch.zeros((n, 1, p), dtype=dt)
    owned = solve_working_set(fit, pen, smooth, op, start, None, U0=mine, own_U0=True, own_W0=True, **kw)
    assert owned.converged[0] and owned.dual.data_ptr() == mine.data_ptr()  # written into the tensors handed over
    assert owned.W.data_ptr() == start.data_ptr()
    assert torch.allclose(owned.dual, fresh.dual, rtol=0, atol=1e-12) and torch.allclose(owned.W, fresh.W, rtol=0, atol=1e-12)


def test_rows_are_taken_in_place_block_by_block():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 7))
    order = rng.permutation(50)
    expected = A[order]
    got = _take_rows_(A, order, block_elems=120)  # two columns per block
    assert got is A and np.array_equal(A, expected)
    _take_rows_(A, np.argsort(order))
    assert np.array_equal(A[order], expected)


def _reordered_problem(monkeypatch):
    monkeypatch.setattr(batch_mod, "REORDER_MIN_SPOTS", 0)  # the renumbered solve at a test's size
    coords, X, y = wide_problem(seed=3)
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, edge_weights=graph.weights, n_nodes=X.shape[0])
    kw = dict(smooth="tv", operator=op, lambda_smooth=0.05, alpha=0.02, beta=0.03, tol=1e-6, max_iter=50_000, device="cpu")
    return X, y, kw


def test_an_owned_design_is_renumbered_in_place_and_put_back(monkeypatch):
    X, y, kw = _reordered_problem(monkeypatch)
    copied = solve_batch(X.copy(), y, **kw)
    taken = []
    rows = batch_mod._rows
    monkeypatch.setattr(batch_mod, "_rows", lambda a, idx: taken.append(np.shape(a)) or rows(a, idx))
    mine = X.copy()
    owned = solve_batch(mine, y, **kw, own_X=True)
    assert X.shape not in taken  # no renumbered copy of the design
    assert np.array_equal(mine, X)  # the caller's rows back in its order, bit for bit
    assert owned.converged[0] and torch.equal(owned.W, copied.W) and torch.equal(owned.dual, copied.dual)


def test_an_owned_design_is_put_back_when_the_solve_fails(monkeypatch):
    X, y, kw = _reordered_problem(monkeypatch)

    def fail(*args, **kwargs):
        raise RuntimeError("inner solve failed")

    monkeypatch.setattr(batch_mod, "primal_dual", fail)
    mine = X.copy()
    with pytest.raises(RuntimeError):
        solve_batch(mine, y, **{**kw, "working_set": False, "coarsen": False}, own_X=True)
    assert np.array_equal(mine, X)


def test_a_mixed_cold_solve_tries_the_constant_start_once(monkeypatch):
    X, y, kw = _reordered_problem(monkeypatch)
    calls = []
    start = batch_mod._constant_start
    monkeypatch.setattr(batch_mod, "_constant_start", lambda *a: calls.append(1) or start(*a))
    res = solve_batch(X, y, **{**kw, "tol": 1e-5}, dtype="mixed")
    assert res.constant_start is None and res.precision["float32_iterations"][0] > 0  # the start was tried and rejected …
    assert res.converged[0] and len(calls) == 1  # … once: the float32 stage does not try it again (10⁵ × 1,000: n·p² each)


def test_a_renumbered_warm_dual_holds_the_result_and_leaves_the_callers_alone(monkeypatch):
    X, y, kw = _reordered_problem(monkeypatch)
    first = solve_batch(X, y, **{**kw, "tol": 1e-3}, dtype="float32")
    warm = dict(W0=first.W, gamma0=first.gamma, dual0=first.dual, data_dual0=first.data_dual, step0=first.step, dtype="float32")
    before = first.dual.clone()
    owned = solve_batch(X, y, **kw, **warm)
    assert torch.equal(first.dual, before)  # the renumbered copy took the result, not the caller's tensor
    inner = batch_mod.solve_working_set
    monkeypatch.setattr(batch_mod, "solve_working_set", lambda *a, **k: inner(*a, **{**k, "own_U0": False}))
    fresh = solve_batch(X, y, **kw, **warm)
    assert torch.equal(owned.dual, fresh.dual) and torch.equal(owned.W, fresh.W)


def test_a_start_is_the_solves_own_only_when_handed_over_or_made_here():
    """The handover convention's one decision (s3r.solver.batch): no pointer arithmetic, no write into a caller's array."""
    f32 = torch.arange(6.0, dtype=torch.float32).reshape(3, 2)
    T, own = batch_mod._start_tensor(f32, False, torch.float32, torch.device("cpu"))
    assert T is f32 and not own  # the caller's tensor as it is: not ours to write into
    T, own = batch_mod._start_tensor(f32, True, torch.float32, torch.device("cpu"))
    assert T is f32 and own  # handed over
    T, own = batch_mod._start_tensor(f32, False, torch.float64, torch.device("cpu"))
    assert own and T.dtype == torch.float64 and T.data_ptr() != f32.data_ptr()  # converted: new memory
    a = np.arange(6.0).reshape(3, 2)
    T, own = batch_mod._start_tensor(a, False, torch.float64, torch.device("cpu"))
    T.add_(1.0)
    assert own and a[0, 0] == 0.0  # a numpy start not handed over is copied, never written into
    T, own = batch_mod._start_tensor(a, True, torch.float64, torch.device("cpu"))
    assert own and T.data_ptr() == a.__array_interface__["data"][0]  # handed over: no copy
    assert batch_mod._start_tensor(None, True, torch.float64, torch.device("cpu")) == (None, False)


@pytest.mark.parametrize("working_set", [True, False])
def test_every_level_hands_its_starts_over_and_the_result_lives_in_them(working_set, monkeypatch):
    """Every level solver takes the same handover keywords (no signature inspection): the coarse-to-fine levels hand
    each level its prolongated starts, the PDHG alone drops them, and the result is the plain solve's."""
    import s3r.solver.multilevel as ml

    monkeypatch.setattr(ml, "COARSEST", 8)
    monkeypatch.setattr(ml, "LEVEL_RATIO", 2.5)
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    coords, X, y = wide_problem(seed=3)
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, n_nodes=X.shape[0])
    kw = dict(smooth="tv", operator=op, lambda_smooth=0.05, alpha=0.02, beta=0.03, tol=1e-7, max_iter=100_000, device="cpu",
              working_set=working_set)
    calls = []
    inner = batch_mod.solve_working_set

    def record(datafit, penalty, smooth, K, W0, gamma0, **k):
        res = inner(datafit, penalty, smooth, K, W0, gamma0, **k)
        calls.append((k["own_W0"], k["own_U0"], k["U0"] is not None, res.W.data_ptr() == W0.data_ptr(),
                      k["U0"] is not None and res.dual.data_ptr() == k["U0"].data_ptr()))
        return res

    monkeypatch.setattr(batch_mod, "solve_working_set", record)
    monkeypatch.setattr(batch_mod, "CONSTANT_START", False)  # the cold path, where the levels run
    res = solve_batch(X, y, coarsen=True, **kw)
    plain = solve_batch(X, y, coarsen=False, **kw)
    assert res.converged[0] and len(res.multilevel["levels"]) >= 2
    if working_set:
        levels = calls[:-1]  # the coarse-to-fine solve's calls; the plain solve's last
        assert all(own_w and keeps_w for own_w, _, _, keeps_w, _ in levels)  # every level's iterate in its start
        assert all(own_u == has_u and kept_u == has_u for _, own_u, has_u, _, kept_u in levels)  # the dual too, past the coarsest
        assert sum(has_u for *_, has_u, _, _ in levels) == len(levels) - 1
        assert calls[-1][:2] == (True, False)  # the plain cold solve's W made in solve_batch: handed over
    else:
        assert calls == []
    np.testing.assert_allclose(res.W.numpy(), plain.W.numpy(), atol=1e-3 * float(plain.W.abs().max()))
