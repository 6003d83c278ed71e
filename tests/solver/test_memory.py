"""The solve's large tensors are made once: no view of the caller's arrays, no second edges × p dual."""

from __future__ import annotations

import numpy as np
import torch

import s3r.solver.working_set as ws_mod
from s3r.solver.batch import _tensor, _unpermute_rows_
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
    mine = U0.clone()
    owned = solve_working_set(fit, pen, smooth, op, torch.zeros((n, 1, p), dtype=dt), None, U0=mine, own_U0=True, **kw)
    assert owned.converged[0] and owned.dual.data_ptr() == mine.data_ptr()  # written into the tensor handed over
    assert torch.allclose(owned.dual, fresh.dual, rtol=0, atol=1e-12) and torch.allclose(owned.W, fresh.W, rtol=0, atol=1e-12)
