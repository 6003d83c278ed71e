"""The compiled minimum cut (s3r.solver.maxflow) against brute force and against scipy's maximum flow."""

from itertools import product

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import maximum_flow
from scipy.spatial import cKDTree

from s3r.solver.maxflow import min_cut


def knn_edges(n, k, rng):
    pts = rng.random((n, 2))
    _, idx = cKDTree(pts).query(pts, k + 1)
    pairs = np.sort(np.stack([np.repeat(np.arange(n), k), idx[:, 1:].ravel()], 1), 1)
    return np.unique(pairs, axis=0)


def cut_objective(S, src, dst, cap, unary):
    return unary[S].sum() + cap[S[src] != S[dst]].sum()


@pytest.mark.parametrize("seed", range(12))
def test_minimum_over_every_subset(seed):
    """Eight spots: the cut's set and value are the minimum over all 256 subsets."""
    rng = np.random.default_rng(seed)
    e = knn_edges(8, 3, rng)
    cap = rng.uniform(0.05, 1.0, len(e)) * (rng.random(len(e)) < 0.9)  # some edges of capacity zero
    unary = rng.normal(size=8) * (rng.random(8) < 0.8)  # some spots without a terminal arc
    best = min(cut_objective(np.array(bits, dtype=bool), e[:, 0], e[:, 1], cap, unary) for bits in product([0, 1], repeat=8))
    res = min_cut(8, e[:, 0], e[:, 1], cap, unary)
    assert res.value == pytest.approx(best, abs=1e-12)
    assert cut_objective(res.source_side, e[:, 0], e[:, 1], cap, unary) == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("n", [50, 3000])
def test_flow_value_agrees_with_scipy(n):
    """Integer capacities on a kNN graph: the same maximum flow as scipy's Dinic (exact integers there)."""
    rng = np.random.default_rng(n)
    e = knn_edges(n, 6, rng)
    cap = rng.integers(0, 40, len(e)).astype(float)
    unary = rng.integers(-60, 61, n).astype(float)
    res = min_cut(n, e[:, 0], e[:, 1], cap, unary, flows=True)
    S, T = n, n + 1
    neg, pos = unary < 0, unary > 0
    rows = np.concatenate([e[:, 0], e[:, 1], np.full(neg.sum(), S), np.flatnonzero(pos)])
    cols = np.concatenate([e[:, 1], e[:, 0], np.flatnonzero(neg), np.full(pos.sum(), T)])
    caps = np.concatenate([cap, cap, -unary[neg], unary[pos]]).astype(np.int32)
    ref = maximum_flow(sp.csr_matrix((caps, (rows, cols)), shape=(n + 2, n + 2)), S, T).flow_value
    assert res.value + np.abs(unary[neg]).sum() == pytest.approx(ref, abs=1e-9)
    assert cut_objective(res.source_side, e[:, 0], e[:, 1], cap, unary) == pytest.approx(res.value, abs=1e-9)
    # the flow: within the edge capacities; each spot's net outflow within its terminal arc; the total is the value
    assert np.all(np.abs(res.flow) <= cap + 1e-9)
    out = np.bincount(e[:, 0], res.flow, n) - np.bincount(e[:, 1], res.flow, n)
    assert np.all(out <= np.maximum(-unary, 0) + 1e-9) and np.all(out >= -np.maximum(unary, 0) - 1e-9)
    assert out[neg].sum() == pytest.approx(ref, abs=1e-9)


def test_float_capacities_and_no_terminals():
    """Real-valued capacities (no rounding); spots without supply or demand stay on the sink side."""
    rng = np.random.default_rng(7)
    e = knn_edges(400, 5, rng)
    cap = rng.uniform(0.0, 1e-6, len(e))
    unary = rng.normal(scale=1e-6, size=400)
    res = min_cut(400, e[:, 0], e[:, 1], cap, unary)
    assert cut_objective(res.source_side, e[:, 0], e[:, 1], cap, unary) == pytest.approx(res.value, rel=1e-12)
    assert res.value <= min(0.0, unary.sum()) + 1e-18  # no worse than S = ∅ or S = every spot
    empty = min_cut(400, e[:, 0], e[:, 1], cap, np.zeros(400))
    assert empty.value == 0.0 and not empty.source_side.any()


@pytest.mark.parametrize("seed", range(4))
def test_a_cut_started_from_another_flow_is_the_same_cut(seed):
    """The flow of a cut with other unaries (and a flow on fewer edges) as the start: the same minimum."""
    rng = np.random.default_rng(seed)
    n = 2000
    e = knn_edges(n, 6, rng)
    cap = rng.uniform(0.0, 2.0, len(e))
    first = rng.normal(size=n)
    second = first + rng.normal(scale=0.5, size=n) * (rng.random(n) < 0.3)
    cold = min_cut(n, e[:, 0], e[:, 1], cap, second)
    prev = min_cut(n, e[:, 0], e[:, 1], cap, first, flows=True)
    warm = min_cut(n, e[:, 0], e[:, 1], cap, second, start=prev.flow)
    assert warm.value == pytest.approx(cold.value, abs=1e-9)
    assert cut_objective(warm.source_side, e[:, 0], e[:, 1], cap, second) == pytest.approx(cold.value, abs=1e-9)
    keep = rng.random(len(e)) < 0.8  # edges dropped since: their flow goes with them
    sub = min_cut(n, e[keep, 0], e[keep, 1], cap[keep], second)
    warm_sub = min_cut(n, e[keep, 0], e[keep, 1], cap[keep], second, start=prev.flow[keep])
    assert warm_sub.value == pytest.approx(sub.value, abs=1e-9)
