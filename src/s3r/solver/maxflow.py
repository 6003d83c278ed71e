"""Minimum s–t cuts on the spot graph: the Boykov–Kolmogorov augmenting-path algorithm, compiled (numba).

Why our own: cut pursuit (:mod:`s3r.solver.cut_pursuit`) asks, for every feature and every refinement, for the set S of
spots minimising Σ_{i∈S} u_i + Σ_{edges cut by S} c_e on the whole spot graph — a minimum cut. scipy's
``maximum_flow`` takes integer capacities only (rounding them loses the small differences the optimality test is
about) and was 4–9× slower on these graphs (10⁶ spots, kNN 7: 16.7 s against 1.7 s here on spots in locality order;
benchmarks/README.md, session 29). Boykov & Kolmogorov (2004) grow two search trees, from the source and from the
sink, reuse them after each augmentation and repair them by adoption — on graphs whose nodes each hold a little supply
or demand and whose edges are local, paths are short and most of the trees survive.

The network: an arc source → i of capacity −u_i where u_i < 0, i → sink of capacity u_i where u_i > 0, and both
directions of every edge with capacity c_e. A cut's cost is Σ_{i∈S} u_i + cut(S) + Σ_{u_i<0} |u_i|, so the minimum
cut is the source side S of the final search, and min_S [Σ_S u + cut(S)] = max-flow − Σ_{u_i<0} |u_i|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

FREE, SOURCE, SINK = 0, 1, 2
NO_PARENT, TERMINAL, ORPHAN = -1, -2, -3


@dataclass
class MinCut:
    source_side: np.ndarray  # (n,) bool: the spots of S
    value: float  # min over S of Σ_S u + cut(S)
    flow: np.ndarray | None  # (m,) net flow along each edge src → dst of the maximum flow (|flow| ≤ c_e), when asked


class Network:
    """The arcs of one edge set, sorted once (each edge both ways), for any number of cuts with other unaries."""

    def __init__(self, n: int, src: np.ndarray, dst: np.ndarray, capacity: np.ndarray):
        self.n = n
        self.src, self.dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        self.capacity = np.asarray(capacity, dtype=np.float64)
        m = self.src.size
        tails = np.concatenate([self.src, self.dst])
        self.order = np.argsort(tails, kind="stable")
        self.position = np.empty(2 * m, dtype=np.int64)
        self.position[self.order] = np.arange(2 * m)
        self.head = np.concatenate([self.dst, self.src])[self.order]
        self.reverse = self.position[np.concatenate([np.arange(m, 2 * m), np.arange(m)])[self.order]]
        self.indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(tails, minlength=n), out=self.indptr[1:])

    def cut(self, unary: np.ndarray, *, flows: bool = False, start: np.ndarray | None = None) -> MinCut:
        """:func:`min_cut` on these edges."""
        m, cap = self.src.size, self.capacity
        unary = np.asarray(unary, dtype=np.float64)
        terminal = -unary  # > 0: residual capacity from the source; < 0: to the sink
        if start is None:
            residual = np.concatenate([cap, cap])[self.order]
        else:
            f = np.clip(np.asarray(start, dtype=np.float64), -cap, cap)
            residual = np.concatenate([cap - f, cap + f])[self.order]
            terminal = terminal - (np.bincount(self.src, f, self.n) - np.bincount(self.dst, f, self.n))  # the spots' surplus
        _max_flow(self.n, self.indptr, self.head, self.reverse, residual, terminal)
        side = _source_side(self.n, self.indptr, self.head, self.reverse, residual, terminal)
        # arc k of edge e is position[e], its reverse position[e + m]: net flow = (residual back − residual forth) / 2
        flow = (residual[self.position[m:]] - residual[self.position[:m]]) / 2 if flows else None
        return MinCut(side, _cut_value(side, self.src, self.dst, cap, unary), flow)


def min_cut(n: int, src: np.ndarray, dst: np.ndarray, capacity: np.ndarray, unary: np.ndarray, *, flows: bool = False,
            start: np.ndarray | None = None) -> MinCut:
    """The set S minimising Σ_{i∈S} unary_i + Σ_{edges (src, dst) with one end in S} capacity_e (capacities ≥ 0).

    ``start`` (m,): a flow along the edges (src → dst, |start_e| ≤ capacity_e) to augment from, such as the ``flow`` of
    the last cut on these edges with other unaries (Kohli & Torr 2007: a spot's surplus from that flow is taken by its
    terminal arcs, which adds one constant to every cut's cost and leaves the minimum where it is). ``flows``: return the
    final flow (the start of a next cut). Several cuts on one edge set: :class:`Network` sorts the arcs once."""
    return Network(n, src, dst, capacity).cut(unary, flows=flows, start=start)


def _cut_value(side, src, dst, capacity, unary) -> float:
    """Σ_S unary + the capacity of the edges S cuts (a warm start shifts the flow's value, not the cut's)."""
    return float(unary[side].sum() + capacity[side[src] != side[dst]].sum())


@njit(cache=True)
def _max_flow(n, indptr, head, reverse, residual, terminal) -> float:
    """Augment until the two trees no longer meet; ``residual`` and ``terminal`` are left residual."""
    tree = np.zeros(n, np.int8)
    parent = np.full(n, NO_PARENT, np.int64)  # the arc that joins a node to its parent, oriented along the flow
    stamp = np.zeros(n, np.int64)
    depth = np.zeros(n, np.int64)
    queue = np.empty(n + 1, np.int64)
    queued = np.zeros(n, np.bool_)
    qs = np.zeros(2, np.int64)  # queue head, tail (a ring of n + 1 slots: every node at most once)
    orphans = np.empty(n, np.int64)
    for i in range(n):
        if terminal[i] != 0:
            tree[i] = SOURCE if terminal[i] > 0 else SINK
            parent[i] = TERMINAL
            depth[i] = 1
            _push(queue, queued, qs, i)
    clock = np.zeros(1, np.int64)
    flow = 0.0
    while qs[0] != qs[1]:
        p = queue[qs[0]]
        qs[0] = (qs[0] + 1) % queue.size
        queued[p] = False
        if tree[p] == FREE:
            continue
        arc = _grow(p, indptr, head, reverse, residual, tree, parent, stamp, depth, queue, queued, qs)
        if arc < 0:
            continue
        _push(queue, queued, qs, p)  # more paths may pass through p
        clock[0] += 1
        bottleneck, count = _augment(arc, head, reverse, residual, terminal, parent, orphans)
        flow += bottleneck
        _adopt(count, orphans, clock[0], indptr, head, reverse, residual, tree, parent, stamp, depth, queue, queued, qs)
    return flow


@njit(cache=True, inline="always")
def _push(queue, queued, qs, i):
    if not queued[i]:
        queue[qs[1]] = i
        qs[1] = (qs[1] + 1) % queue.size
        queued[i] = True


@njit(cache=True)
def _grow(p, indptr, head, reverse, residual, tree, parent, stamp, depth, queue, queued, qs) -> int:
    """Extend p's tree by its free neighbours; the arc source-tree → sink-tree where the trees meet, else −1."""
    for a in range(indptr[p], indptr[p + 1]):
        q = head[a]
        forward = a if tree[p] == SOURCE else reverse[a]  # the arc the flow would take between p and q
        if residual[forward] <= 0:
            continue
        if tree[q] == FREE:
            tree[q] = tree[p]
            parent[q] = forward
            stamp[q] = stamp[p]
            depth[q] = depth[p] + 1
            _push(queue, queued, qs, q)
        elif tree[q] != tree[p]:
            return forward
    return -1


@njit(cache=True)
def _augment(arc, head, reverse, residual, terminal, parent, orphans):
    """Push the bottleneck along source → … → tail(arc) → head(arc) → … → sink; saturated links make orphans."""
    u, v = head[reverse[arc]], head[arc]
    bottleneck = residual[arc]
    x = u
    while parent[x] != TERMINAL:
        bottleneck = min(bottleneck, residual[parent[x]])
        x = head[reverse[parent[x]]]
    bottleneck = min(bottleneck, terminal[x])
    x = v
    while parent[x] != TERMINAL:
        bottleneck = min(bottleneck, residual[parent[x]])
        x = head[parent[x]]
    bottleneck = min(bottleneck, -terminal[x])
    residual[arc] -= bottleneck
    residual[reverse[arc]] += bottleneck
    count = 0
    for side in range(2):
        x = u if side == 0 else v
        while parent[x] != TERMINAL:
            a = parent[x]
            residual[a] -= bottleneck
            residual[reverse[a]] += bottleneck
            nxt = head[reverse[a]] if side == 0 else head[a]
            if residual[a] <= 0:
                parent[x] = ORPHAN
                orphans[count] = x
                count += 1
            x = nxt
        terminal[x] += -bottleneck if side == 0 else bottleneck
        if (terminal[x] <= 0) if side == 0 else (terminal[x] >= 0):
            parent[x] = ORPHAN
            orphans[count] = x
            count += 1
    return bottleneck, count


@njit(cache=True)
def _rooted_depth(q, t, now, head, reverse, parent, stamp, depth) -> int:
    """Depth of q if its path up reaches a terminal (−1 if it ends at an orphan); marks the path for this clock."""
    d, y = 0, q
    while stamp[y] != now:
        if parent[y] == TERMINAL:
            stamp[y], depth[y] = now, 1
            break
        if parent[y] < 0:
            return -1
        d += 1
        y = head[reverse[parent[y]]] if t == SOURCE else head[parent[y]]
    d += depth[y]
    y, dd = q, d
    while stamp[y] != now:
        stamp[y], depth[y] = now, dd
        dd -= 1
        y = head[reverse[parent[y]]] if t == SOURCE else head[parent[y]]
    return d


@njit(cache=True)
def _adopt(count, orphans, now, indptr, head, reverse, residual, tree, parent, stamp, depth, queue, queued, qs):
    """Give every orphan the shallowest valid parent of its own tree, or free it (its children become orphans)."""
    while count > 0:
        count -= 1
        o = orphans[count]
        t = tree[o]
        best, best_depth = -1, 1 << 62
        for a in range(indptr[o], indptr[o + 1]):
            q = head[a]
            link = reverse[a] if t == SOURCE else a  # the arc q → o (source tree) or o → q (sink tree)
            if tree[q] != t or residual[link] <= 0:
                continue
            d = _rooted_depth(q, t, now, head, reverse, parent, stamp, depth)
            if 0 <= d < best_depth:
                best, best_depth = link, d
        if best >= 0:
            parent[o], stamp[o], depth[o] = best, now, best_depth + 1
            continue
        for a in range(indptr[o], indptr[o + 1]):
            q = head[a]
            if tree[q] != t:
                continue
            link = reverse[a] if t == SOURCE else a
            if residual[link] > 0:
                _push(queue, queued, qs, q)
            pa = parent[q]
            if pa >= 0 and (head[reverse[pa]] if t == SOURCE else head[pa]) == o:
                parent[q] = ORPHAN
                orphans[count] = q
                count += 1
        tree[o], parent[o] = FREE, NO_PARENT


@njit(cache=True)
def _source_side(n, indptr, head, reverse, residual, terminal) -> np.ndarray:
    """The nodes reachable from the source in the residual network (the minimal minimum cut's source side)."""
    side = np.zeros(n, np.bool_)
    stack = np.empty(n, np.int64)
    top = 0
    for i in range(n):
        if terminal[i] > 0:
            side[i] = True
            stack[top] = i
            top += 1
    while top > 0:
        top -= 1
        p = stack[top]
        for a in range(indptr[p], indptr[p + 1]):
            q = head[a]
            if not side[q] and residual[a] > 0:
                side[q] = True
                stack[top] = q
                top += 1
    return side
