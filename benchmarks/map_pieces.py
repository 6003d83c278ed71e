"""Benchmark (issue 11): ``s3r.cv.map_pieces`` on a sparse 10⁵-spot map, before and after counting over non-zeros.

Tuning counts the pieces of every trial's map on every fold. The map here is what a medium-penalty fit gives:
100 features, 5 of them non-zero and piecewise constant over the three-regions layout (plus a few isolated
spots), kNN k = 7. The old count (one graph node per spot × feature) is rebuilt inline for comparison.

    python benchmarks/map_pieces.py [--n 100000] [--p 100] [--active 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from s3r import cv
from s3r.simulate import simulate


def all_features(problem, W, rtol=1e-3):
    """The count before this session: a graph over every spot × feature."""
    n, B, p = W.shape
    edges = problem.graph.edges
    Wb = W[:, 0, :]
    tol = rtol * float(np.abs(Wb).max())
    nonzero = np.abs(Wb) > tol
    a, c = edges[:, 0], edges[:, 1]
    same = (np.abs(Wb[a] - Wb[c]) <= tol) & nonzero[a] & nonzero[c]
    e, j = np.nonzero(same)
    joined = sp.coo_matrix((np.ones(e.size), (a[e] * p + j, c[e] * p + j)), shape=(n * p, n * p))
    _, labels = connected_components(joined, directed=False)
    return int(np.unique(labels[nonzero.ravel()]).size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--p", type=int, default=100)
    parser.add_argument("--active", type=int, default=5)
    args = parser.parse_args()
    sim = simulate("three_regions", geometry="uniform", n_spots=args.n, seed=0, design="expression", sigma=0.2)
    problem = cv.CVProblem.from_arrays(sim.X[:, :1].repeat(args.p, 1), sim.y, sim.coords, dtype="float64",
                                       model={"smooth": "tv", "graph": "knn", "k": 7})
    rng = np.random.default_rng(0)
    W = np.zeros((args.n, 1, args.p))
    for j in rng.choice(args.p, args.active, replace=False):
        W[:, 0, j] = rng.choice([0.0, 1.0, -2.0], size=sim.n_regions)[sim.regions] + (rng.uniform(size=args.n) < 1e-3)
    rows = []
    for name, fn in (("all features (before)", lambda: all_features(problem, W)), ("non-zeros (now)", lambda: int(cv.map_pieces(problem, W)[0]))):
        t = time.perf_counter()
        count = fn()
        rows.append((name, count, time.perf_counter() - t))
    print(f"n={args.n} p={args.p} active={args.active} edges={problem.graph.n_edges} load={os.getloadavg()[0]:.1f} "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    for name, count, secs in rows:
        print(f"| {name} | {count} | {secs:.2f} s |")


if __name__ == "__main__":
    main()
