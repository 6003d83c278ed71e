"""The PDHG step of :mod:`s3r.solver.primal_dual` as one compiled CPU loop (numba), for the common case.

Why: on a CPU the torch step is bound by memory traffic, not arithmetic. Each of its ~20 tensor operations streams
the whole batch's edge dual (m × B × p) or the coefficients once more — the two sparse products, the clip, the
relaxation's lerp over every field — so a problem-iteration of the tuning (3,592 spots, 14,739 edges, 20 columns)
moves ~10 MB. Here (:mod:`s3r.solver.fused_kernels`) a step is one pass over the nodes for the primal, one for the
data dual and one over the edges (the clip, Kᵀ U by scattering into the node rows, the relaxation), for a *tile* of
a few problems side by side in each row; a tile runs every step up to the next residual check before the next tile
starts, and the check itself is computed there, its edge part inside the last step's edge pass. The round-0 fold job
of 12 DLPFC targets: 29.0 → 19.3 CPU-s, a final fit 19.3 → 12.6 (one problem at a time; session 25); tiles, a
67-target fold job 111.3 → 94.2 CPU-s with the copies of session 27 (benchmarks/README.md).

The mathematics is the torch step's, term for term (the sparse group lasso prox, the squared loss's dual prox with
at most one eliminated covariate, the tv edge dual held in units of λ and clipped to [−1, 1], per-edge steps folded
in, the residuals of ``primal_dual``'s check), so the two paths give the same iterates and decisions up to rounding
(``tests/solver/test_fused_cpu.py``). Every other configuration — CUDA, several torch threads, GLM families, the
coarse levels' aggregated fit, quadratic smoothness, a general sparse K — keeps the torch step.
"""

from __future__ import annotations

import numpy as np
import torch

from s3r.columns import put
from s3r.solver.datafit import SquaredLoss
from s3r.solver.operators import IncidenceOperator
from s3r.solver.penalties import GraphL1, SparseGroupLasso

ENABLED = True  # the switch the tests and the side-by-side benchmarks turn off

_kernel = None


def available() -> bool:
    """numba importable (a dependency; without it every solve keeps the torch step)."""
    global _kernel
    if _kernel is None:
        try:
            from s3r.solver.fused_kernels import pdhg_tile as _kernel  # numba: imported at the first fused solve
        except ImportError:
            _kernel = False
    return _kernel is not False


def applicable(datafit, penalty, smooth, K, W: torch.Tensor, unit: bool, folded: bool, stepped_gamma: bool) -> bool:
    """Whether the fused loop computes exactly what the torch step would for this solve. One torch thread only:
    the loop is serial, and with several threads torch's own operations run in parallel."""
    return (ENABLED and W.device.type == "cpu" and W.dtype in (torch.float32, torch.float64) and torch.get_num_threads() == 1
            and type(datafit) is SquaredLoss and (datafit.Z is None or datafit.Z.shape[1] == 1) and not stepped_gamma
            and type(penalty) is SparseGroupLasso and penalty.row_weight is None
            and type(smooth) is GraphL1 and unit and folded and type(K) is IncidenceOperator and available())


def for_solve(datafit, penalty, smooth, K, W, edge_r, rho: float, *, unit: bool, folded: bool, stepped_gamma: bool):
    """The fused loop for this solve, or None where the torch step runs (:func:`applicable`)."""
    if not applicable(datafit, penalty, smooth, K, W, unit, folded, stepped_gamma):
        return None
    return FusedSteps(K, edge_r, rho, W.dtype)


TILE_FLOATS = 128  # a tile's row width T·p: the edge pass's cost per edge-problem is lowest at ~100–150 floats
TILE_MAX = 16


def tile_width(p: int) -> int:
    """Problems side by side in one tile for p columns: rows of ~TILE_FLOATS floats (3,600 nodes, float32, the edge
    pass's ns per edge-problem — p 6: 22.5 alone, 2.0 with 10 side by side; p 12: 16.3 / 4.2 (10); p 18: 14.4 / 4.6
    (8); p 25: 17.3 / 7.0 (4); wider tiles lose it again to the cache; benchmarks/README.md, session 27)."""
    return max(1, min(TILE_MAX, round(TILE_FLOATS / max(p, 1))))


class FusedSteps:
    """Runs k PDHG steps of a batch in the compiled loop, tile by tile, then their check (residuals and objective).

    From its first run to the end of the solve the loop owns the state: a mirror of z and its step zt made once from
    the solver's tensors, cut into *tiles* of a few problems side by side (consecutive problems of the solver's batch;
    :mod:`s3r.solver.fused_kernels` says why), with the batch's data and penalty rows beside it. The solver's tensors
    are not written while it runs: the relaxation z ← z + ρ(zt − z) is left to the next run (:meth:`relax_later`), the
    trace's objective comes from the check (:attr:`objective`), a problem that leaves the batch has its last step
    copied out and the tiles are cut again from the others (:meth:`leave`), and the solver reads every problem's last
    step back once, at the end (:meth:`state`). After a run z is unrelaxed beside zt, as the solver's residual check
    expects. (Syncing the solver's tensors at every trace entry and exit was 14 % of a fold job: 19.1 → 16.5 CPU-s
    without; benchmarks/README.md, session 26.)"""

    FIELDS = ("W", "v", "U", "pred", "KtU", "gamma")

    def __init__(self, K: IncidenceOperator, edge_r, rho: float, dtype: torch.dtype):
        self.rho = float(rho)
        self.src = K._src.cpu().numpy().astype(np.int64)
        self.dst = K._dst.cpu().numpy().astype(np.int64)
        w = K._w.view(-1).double().cpu().numpy()
        r = np.asarray(edge_r.view(-1).double().cpu().numpy() if torch.is_tensor(edge_r) else edge_r, dtype=np.float64)
        self.np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self.w = np.ascontiguousarray(w, dtype=self.np_dtype)
        self.se = np.ascontiguousarray(np.broadcast_to(w / r, w.shape), dtype=self.np_dtype)  # the folded K's values, diag(1/r_e) K
        self.r = np.ascontiguousarray(np.broadcast_to(r, w.shape), dtype=np.float64)  # per-edge bounds: σ_u = c / r_e
        self.r_floor = 1e-3 * (float(K.norm_bound()) / 2) ** 0.5  # the edge residual's scale floor, × ‖W⁺‖
        self.tiles = None  # the active problems' mirror: a list of dicts, one a tile (see _mirror)
        self.shared = None  # X, Z, elim, the penalty factors, the row norms: the same for every problem
        self.done = {}  # mirror id → the last step's fields of a problem that left the batch
        self.B = self.p = 0
        self.objective = None  # (problems in the batch,) float64: the objective at the last run's last step
        self.steps = None  # the solver's step arrays of the last run, cut by tile
        self.scratch = {}  # row width → the kernel's scratch arrays
        self.pending = False  # z's relaxation left to the next run

    def _mirror(self, z, datafit, penalty) -> None:
        n, B, p = z.W.shape
        a = lambda T: T.detach().numpy()  # noqa: E731  (CPU tensors: views of the same memory)
        elim = datafit.Z is not None
        gamma = z.gamma[:, 0].clone() if elim else torch.zeros(B, dtype=z.W.dtype)
        state = {f: a(getattr(z, f)) for f in self.FIELDS[:5]} | {"gamma": a(gamma)}
        self.B, self.p = B, p
        self.shared = (a(datafit.X.contiguous()), a(datafit.Z[:, 0].contiguous()) if elim else np.zeros(n, dtype=self.np_dtype),
                       elim, a(penalty.factor.contiguous()), a(datafit.row_norms2().reshape(-1).contiguous()))
        data = {"y": a(datafit.y), "c2": a(2 * datafit.c), "free": a(penalty.free.reshape(n, B))}  # the per-problem columns
        ids = np.arange(B)
        # nearly equal widths (10 problems of 18 columns: 5 + 5); zt is written by the first step before it is read
        self.tiles = [_tile(ids[cols], state, None, data, cols) for cols in _spans(np.array_split(ids, -(-B // tile_width(p))))]

    def _step_arrays(self, s, penalty) -> list[tuple]:
        """The per-problem step arrays of each tile, made again only when the solver's steps or the tiles changed."""
        if self.steps is None or self.steps[0] is not s:
            a = lambda T: T.detach().numpy()  # noqa: E731
            tau = s.tau.reshape(-1)
            per = (a(tau), a((s.t3 * s.ds).reshape(-1)), a(tau * penalty.alpha), a(tau * penalty.beta * penalty.sqrt_n))
            tail = (a(s.c.reshape(-1)), a(penalty.alpha).astype(np.float64), a(penalty.beta * penalty.sqrt_n).astype(np.float64))
            sv, ds = a(s.sigma_v), a(s.ds.reshape(-1))
            cut = lambda M, at: np.ascontiguousarray(M[..., at])  # noqa: E731
            self.steps = (s, [(tuple(cut(M, at) for M in (*per, sv, *tail)), cut(ds, at)) for at in _spans(t["ids"] for t in self.tiles)])
        return self.steps[1]

    def _scratch(self, n: int, width: int) -> tuple:
        """The kernel's scratch arrays for a tile of row width ``width`` (wbar, col, thv, acc), made once a width."""
        if width not in self.scratch:
            from s3r.solver.fused_kernels import ACC_ROWS

            dt = self.np_dtype
            self.scratch[width] = (np.empty((n, width), dtype=dt), np.empty(width, dtype=dt), np.empty(width, dtype=dt),
                                   np.empty((ACC_ROWS, max(width, 2)), dtype=np.float64))
        return self.scratch[width]

    def run(self, k: int, z, s, datafit, penalty) -> tuple[torch.Tensor, torch.Tensor]:
        """k steps, then the check of the last one: (rel_p, rel_d), as the solver's ``residuals`` gives them; the
        objective at the last step into :attr:`objective`."""
        if self.tiles is None:
            self._mirror(z, datafit, penalty)
        n, p = z.W.shape[0], self.p
        X, Z, elim, factor, x2 = self.shared
        flat = lambda M: M.reshape(M.shape[0], -1)  # noqa: E731  (n, T, p) → (n, T·p): a view
        out = np.empty((sum(t["ids"].size for t in self.tiles), 3), dtype=np.float64)
        spans = _spans(t["ids"] for t in self.tiles)  # a tile's rows of the check's output: its place in the batch
        for tile, at, (steps, ds) in zip(self.tiles, spans, self._step_arrays(s, penalty)):
            zc, zs, d = tile["z"], tile["zt"], tile["data"]
            wbar, col, thv, acc = self._scratch(n, tile["ids"].size * p)
            tau, kt, thr, gthr, sv, cw, alpha, bsq = steps
            _kernel(int(k), self.rho, self.pending, p, flat(zc["W"]), zc["v"], flat(zc["U"]), zc["pred"], flat(zc["KtU"]),
                    flat(zs["W"]), zs["v"], flat(zs["U"]), zs["pred"], flat(zs["KtU"]), zc["gamma"], zs["gamma"], X, d["y"], d["c2"],
                    Z, elim, d["free"], factor, tau, kt, thr, gthr, sv, cw, alpha, bsq, self.src, self.dst, self.se, self.w,
                    wbar, col, thv, x2, ds, self.r, self.r_floor, acc, out[at])
        self.pending = False
        self.objective = out[:, 2]
        return torch.from_numpy(out[:, 0]).to(z.W.dtype), torch.from_numpy(out[:, 1]).to(z.W.dtype)

    def leave(self, gone: torch.Tensor) -> np.ndarray:
        """The problems at positions ``gone`` of the batch leave it: their objectives at the last step. Their last step
        is kept for :meth:`state`; only the tiles they leave are copied again, without them (a tile left under half
        its width joins its neighbour): re-cutting the whole batch at every exit was 4.4 of a fold job's 19 CPU-s."""
        gone = np.sort(gone.cpu().numpy())
        objective = self.objective[gone]
        tiles = []
        for tile, at in zip(self.tiles, _spans(t["ids"] for t in self.tiles)):
            out = np.isin(np.arange(at.start, at.stop), gone)
            for slot in np.flatnonzero(out):
                self.done[int(tile["ids"][slot])] = {f: _columns(M, f, slice(slot, slot + 1)) for f, M in tile["zt"].items()}
            if not out.all():
                tiles.append(_tile(tile["ids"][~out], tile["z"], tile["zt"], tile["data"], ~out) if out.any() else tile)
        self.tiles = self._joined_small(tiles)  # the positions close up as the solver's batch does
        self.objective = np.delete(self.objective, gone)
        self.steps = None
        return objective

    def _joined_small(self, tiles: list[dict]) -> list[dict]:
        """Neighbouring tiles joined where both together fit one tile's width and one is under half of it."""
        width = tile_width(self.p)
        out: list[dict] = []
        for tile in tiles:
            last = out[-1] if out else None
            if last is not None and last["ids"].size + tile["ids"].size <= width and min(last["ids"].size, tile["ids"].size) * 2 < width:
                both = lambda key: {f: np.concatenate([last[key][f], tile[key][f]], axis=_axis(f)) for f in last[key]}  # noqa: E731
                out[-1] = {"ids": np.concatenate([last["ids"], tile["ids"]]), "z": both("z"), "zt": both("zt"), "data": both("data")}
            else:
                out.append(tile)
        return out

    def relax_later(self) -> bool:
        """Take the solver's z ← z + ρ(zt − z) onto the mirror, done by the next run; False before the first run."""
        self.pending = self.tiles is not None
        return self.pending

    def state(self, elim: bool) -> dict | None:
        """The last step's fields of every problem of the batch, in its order and the solver's layout (the batch on
        axis 1; γ (B, 1)), those that left included; None before the first run."""
        if self.tiles is None:
            return None
        first = self.tiles[0]["zt"] if self.tiles else next(iter(self.done.values()))
        out = {f: np.empty((self.B,) if f == "gamma" else (M.shape[0], self.B, *M.shape[2:]), dtype=M.dtype) for f, M in first.items()}
        parts = [(t["ids"], t["zt"]) for t in self.tiles] + [([i], fields) for i, fields in self.done.items()]
        for ids, fields in parts:
            for f, M in fields.items():
                put(out[f], _axis(f), ids, M)
        state = {f: torch.from_numpy(M) for f, M in out.items()}
        state["gamma"] = state["gamma"].reshape(-1, 1) if elim else None
        return state


def _axis(field: str) -> int:
    """The batch's axis of a mirror field: γ is (B,), every other field has the batch on axis 1."""
    return 0 if field == "gamma" else 1


def _columns(M: np.ndarray, field: str, cols) -> np.ndarray:
    """The problems ``cols`` of a mirror field, as a contiguous copy (never a view: z, zt and the solver's tensors are
    three states)."""
    return np.array(M[cols] if field == "gamma" else M[:, cols], order="C", copy=True)


def _tile(ids: np.ndarray, z: dict, zt: dict | None, data: dict, cols) -> dict:
    """A tile of the problems ``cols`` of the fields z, zt (None: left to the first step to write) and the data
    columns, copied; ``ids``: their indices in the batch as first run."""
    tile_z = {f: _columns(M, f, cols) for f, M in z.items()}
    return {"ids": ids, "z": tile_z, "zt": {f: np.empty_like(M) for f, M in tile_z.items()} if zt is None else
            {f: _columns(M, f, cols) for f, M in zt.items()}, "data": {d: _columns(M, d, cols) for d, M in data.items()}}


def _spans(parts) -> list[slice]:
    """Consecutive slices of the sizes of ``parts`` (arrays): the tiles' places in the solver's batch, which keeps
    their order, or the columns of a batch cut into parts."""
    spans, start = [], 0
    for part in parts:
        spans.append(slice(start, start + len(part)))
        start += len(part)
    return spans
