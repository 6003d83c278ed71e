"""A spot graph on disk: the workflow builds it once per sample and every fit and tuning fold reads it back,
so all of a sample's fits share the identical edge list. Beside :mod:`s3r.graph`, which stays I/O-free."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from s3r.graph import SpatialGraph

__all__ = ["write_graph", "read_graph", "graph_summary"]


def write_graph(path: str | os.PathLike, graph: SpatialGraph, **extra) -> None:
    """Store a SpatialGraph so every fit of a sample reuses the identical edge list."""
    from s3r.io import write_npz

    write_npz(
        path, n_nodes=np.int64(graph.n_nodes), edges=graph.edges, weights=graph.weights,
        method=np.str_(graph.method), **({} if graph.lattice is None else {"lattice": np.str_(graph.lattice)}), **extra,
    )


def read_graph(path: str | os.PathLike) -> SpatialGraph:
    with np.load(path, allow_pickle=False) as f:
        lattice = str(f["lattice"]) if "lattice" in f.files else None
        return SpatialGraph(int(f["n_nodes"]), f["edges"], f["weights"], str(f["method"]), lattice)


def graph_summary(graph: SpatialGraph, **extra: Any) -> dict[str, Any]:
    """Size and connectivity of a graph (the workflow's graph JSON, read by the summary table)."""
    n_components, _ = graph.components()
    degrees = graph.degrees()
    return {
        **extra,
        "n_nodes": graph.n_nodes,
        "n_edges": graph.n_edges,
        "n_components": n_components,
        "isolated_spots": int((degrees == 0).sum()),
        "mean_degree": float(degrees.mean()) if graph.n_nodes else 0.0,
        "lattice": graph.lattice,
    }
