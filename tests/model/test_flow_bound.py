"""The natural λ scale's min-norm edge flow: the grounded LU gives the exact (pseudo-inverse) flow on every part."""

from __future__ import annotations

import numpy as np

from s3r.graph import knn_graph
from s3r.problem import _min_norm_flow_bound


def test_the_flow_bound_is_the_min_norm_flow_on_a_graph_of_two_parts():
    rng = np.random.default_rng(0)
    coords = np.vstack([rng.uniform(size=(60, 2)), rng.uniform(size=(40, 2)) + 10.0])  # two far clusters: two parts
    graph = knn_graph(coords, 5)
    K = graph.incidence()
    n_parts, labels = graph.components()
    assert n_parts == 2
    G = rng.normal(size=(100, 4))
    parts = [labels == c for c in range(n_parts)]
    D = G.copy()
    for rows in parts:
        D[rows] -= D[rows].mean(axis=0)
    L = (K.T @ K).toarray()
    expected = np.max(np.abs(K @ (np.linalg.pinv(L) @ D)))  # the least-norm solution of L φ = D, then its flow
    assert abs(_min_norm_flow_bound(K, G) - expected) <= 1e-10 * expected
