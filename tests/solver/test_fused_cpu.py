"""The compiled CPU step (s3r.solver.fused_cpu) computes the torch step's iterates and residual checks: in float64 the
two paths give the same iterations, maps, duals, residuals and objectives to rounding, on a batch with everything the fused loop handles (an
eliminated intercept, held-out spots, rows fixed at zero, penalty factors, λ = 0 beside λ > 0, problems leaving the
batch, step balancing); and it is used only where it applies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import s3r.solver.fused_cpu as fused_cpu
from s3r.solver.datafit import SquaredLoss
from s3r.solver.operators import IncidenceOperator, SparseMatrixOperator
from s3r.solver.penalties import GraphL1, GraphQuadratic, SparseGroupLasso
from s3r.solver.primal_dual import primal_dual
from s3r.graph import knn_graph

T = torch.float64


def _batch(intercept: bool, B: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, p = 400, 6
    xy = rng.uniform(0, 20, (n, 2))
    graph = knn_graph(xy, k=6)
    K = IncidenceOperator(graph.edges, graph.weights, n, "cpu", T)
    X = np.abs(rng.standard_normal((n, p)))
    W = np.zeros((n, p))
    W[:, 0] = np.where(xy[:, 0] > 10, 1.0, -0.5)
    W[:, 1] = np.where(xy[:, 1] > 8, 0.8, 0.0)
    y = (X * W).sum(1) + 0.3 * rng.standard_normal(n) + (2.0 if intercept else 0.0)
    o = np.ones((n, B))
    o[rng.random((n, B)) < 0.2] = 0.0  # held-out spots
    free = np.ones((n, B))
    free[:25, -1] = 0.0  # rows fixed at zero in one problem
    fit = SquaredLoss(torch.tensor(X, dtype=T), torch.tensor(np.repeat(y[:, None], B, 1), dtype=T), torch.tensor(o, dtype=T),
                      torch.ones((n, 1), dtype=T) if intercept else None)
    alpha = torch.tensor(np.geomspace(3e-4, 3e-2, B), dtype=T)
    beta = torch.tensor(np.geomspace(1e-2, 1e-4, B), dtype=T)
    factor = torch.tensor([1.0, 1.0, 0.5, 2.0, 1.0, 1.0], dtype=T)
    pen = SparseGroupLasso(alpha, beta, factor, n, torch.tensor(free, dtype=T))
    lam = torch.tensor(np.r_[0.0, np.geomspace(1e-3, 1e-1, B - 1)] if B > 1 else [3e-3], dtype=T)
    gamma0 = torch.zeros((B, 1), dtype=T) if intercept else None
    return fit, pen, GraphL1(lam), K, torch.zeros((n, B, p), dtype=T), gamma0


def _both(monkeypatch, args, **kw):
    out = []
    for on in (False, True):
        monkeypatch.setattr(fused_cpu, "ENABLED", on)
        out.append(primal_dual(*args, **kw))
    return out


@pytest.mark.parametrize("intercept,B,tile_floats", [(True, 4, 128), (False, 4, 128), (True, 1, 128), (True, 5, 12), (False, 5, 6),
                                                     (True, 5, 24)])
def test_the_fused_step_gives_the_torch_steps_iterates(monkeypatch, intercept, B, tile_floats):
    """``tile_floats``: 128 puts the batch in one tile (6 columns); 12 cuts it into tiles of 2, 2 and 1 problems, 6
    into one problem a tile, 24 into 3 + 2 (tiles of up to 4), where a tile left with one problem joins its
    neighbour; problems leave at different checks, so the tiles are cut again as they go."""
    torch.set_num_threads(1)
    monkeypatch.setattr(fused_cpu, "TILE_FLOATS", tile_floats)
    args = _batch(intercept, B)
    used, widths = [], []
    real = fused_cpu.FusedSteps.run

    def run(self, *a):
        used.append(a[0])
        out = real(self, *a)
        widths.append(tuple(t["ids"].size for t in self.tiles))
        return out

    monkeypatch.setattr(fused_cpu.FusedSteps, "run", run)
    ref, new = _both(monkeypatch, args, tol=1e-7, max_iter=4_000)
    assert used, "the fused loop did not run"
    assert widths[0] == {128: (B,), 12: (2, 2, 1), 6: (1,) * B, 24: (3, 2)}[tile_floats]
    if tile_floats == 24:
        assert any(len(w) == 1 and sum(w) >= 2 for w in widths), widths  # two tiles became one
    if B > 1:
        assert len(set(ref.iterations)) > 1 and sum(widths[-1]) < B  # problems left at different checks; the tiles were cut again
    assert np.array_equal(ref.converged, new.converged) and int(ref.converged.sum()) >= B - 1  # B = 5: the weakest λ runs to the cap
    assert np.array_equal(ref.iterations, new.iterations)
    scale = max(1.0, float(ref.W.abs().max()))
    assert float((ref.W - new.W).abs().max()) <= 1e-9 * scale
    assert float((ref.dual - new.dual).abs().max()) <= 1e-9 * max(1.0, float(ref.dual.abs().max()))
    assert float((ref.data_dual - new.data_dual).abs().max()) <= 1e-9
    assert np.allclose(ref.objective, new.objective, rtol=1e-12, atol=0)
    if intercept:
        assert float((ref.gamma - new.gamma).abs().max()) <= 1e-9
    # the residual checks (the fused loop computes its own) read the same, to the rounding of differences of near-equal
    # terms (a residual of 1e-9 from terms of 1: ~1e-7 relative; 1e-12 absolute: rounding); a problem whose every term is 0 (W = 0 where the
    # scales vanish) reads ~1e290 on both paths, a number with no digits to compare
    def same(a, b):
        a, b = np.asarray(a), np.asarray(b)
        sane = (a < 1e100) & (b < 1e100)
        return np.array_equal(a >= 1e100, b >= 1e100) and np.allclose(a[sane], b[sane], rtol=1e-5, atol=1e-12)

    assert len(ref.trace) == len(new.trace)
    for a, b in zip(ref.trace, new.trace):
        assert a["iteration"] == b["iteration"]
        assert same(a["primal_residual"], b["primal_residual"]) and same(a["dual_residual"], b["dual_residual"])
        assert np.allclose(a["objective"], b["objective"], rtol=1e-12, atol=0)  # the loop's own, from its check
    assert same(ref.primal_residual, new.primal_residual) and same(ref.dual_residual, new.dual_residual)
    # the same exact zeros, except where one path's soft-threshold lands a rounding error past the threshold (an entry of
    # 4e-19 against 0 on this machine with numba 0.68.1's contracted multiply-adds, B = 5, one problem a tile)
    differ = (ref.W == 0) != (new.W == 0)
    assert float(torch.where(differ, (ref.W - new.W).abs(), 0.0).max()) <= 1e-15 * scale and int(differ.sum()) <= 2
    assert int((ref.W[:25, -1] != 0).sum()) == 0  # rows fixed at zero stay zero


def test_a_truncated_solve_stops_at_the_same_place(monkeypatch):
    """max_iter off the residual checks' grid: the fused loop runs only up to it, and the state is the torch step's."""
    torch.set_num_threads(1)
    ref, new = _both(monkeypatch, _batch(True, 3), tol=0.0, max_iter=37)
    assert np.array_equal(ref.iterations, new.iterations) and int(ref.iterations.max()) == 37
    assert float((ref.W - new.W).abs().max()) <= 1e-12 * max(1.0, float(ref.W.abs().max()))
    assert np.allclose(ref.objective, new.objective, rtol=1e-13, atol=0)


def test_float32_stays_within_rounding_of_the_torch_step(monkeypatch):
    torch.set_num_threads(1)
    fit, pen, smooth, K, W0, g0 = _batch(True, 3)
    f32 = lambda t: t.to(torch.float32)  # noqa: E731
    fit = SquaredLoss(f32(fit.X), f32(fit.y), f32(fit.o), f32(fit.Z))
    pen = SparseGroupLasso(f32(pen.alpha), f32(pen.beta), f32(pen.factor), fit.n, f32(pen.free.squeeze(-1)))
    args = (fit, pen, GraphL1(f32(smooth.lam.view(-1))), K.astype(torch.float32), f32(W0), f32(g0))
    ref, new = _both(monkeypatch, args, tol=0.0, max_iter=200)
    assert float((ref.W - new.W).abs().max()) <= 1e-4 * max(1.0, float(ref.W.abs().max()))
    assert np.allclose(ref.objective, new.objective, rtol=1e-5, atol=0)


def test_it_applies_only_to_what_it_computes():
    fit, pen, smooth, K, W0, _ = _batch(False, 2)
    torch.set_num_threads(1)
    assert fused_cpu.applicable(fit, pen, smooth, K, W0, True, True, False)
    assert not fused_cpu.applicable(fit, pen, GraphQuadratic(smooth.lam.view(-1)), K, W0, True, True, False)
    general = SparseMatrixOperator(K.to_scipy(), "cpu", T)
    assert not fused_cpu.applicable(fit, pen, smooth, general, W0, True, True, False)
    assert not fused_cpu.applicable(fit, pen, smooth, K, W0, False, True, False)  # the dual not held in units of λ
    two = SquaredLoss(fit.X, fit.y, fit.o, torch.ones((fit.n, 2), dtype=T))
    assert not fused_cpu.applicable(two, pen, smooth, K, W0, True, True, False)  # two covariates: the torch step's solve
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert not fused_cpu.applicable(fit, pen, smooth, K, W0, True, True, False)  # several threads: torch's parallel ops
    finally:
        torch.set_num_threads(saved)
