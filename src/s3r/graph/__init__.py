"""Spatial graphs over spots, built sparse from coordinates.

Everything here is O(n · neighbours): a dense n × n matrix of 23k cells already costs 4 GB, which is the
reference implementation's scaling wall. Edge lists are kept canonical (i < j, unique,
lexicographically sorted, int64) so that the same coordinates always give bit-identical operators.

The package: ``coords`` (checking coordinates and settings), ``spatial_graph`` (:class:`SpatialGraph`),
``build`` (the builders), ``operators`` (smoothness operators). Every name is importable from ``s3r.graph``;
storing a graph for reuse is ``s3r.graph_io``.
"""

from __future__ import annotations

from s3r.graph.build import GRAPH_METHODS, build_graph, delaunay_graph, knn_graph, mst_graph, radius_graph
from s3r.graph.coords import validate_coords
from s3r.graph.operators import neighbour_mean_operator, reference_knn_operator
from s3r.graph.spatial_graph import SpatialGraph

__all__ = [
    "GRAPH_METHODS",
    "SpatialGraph",
    "build_graph",
    "delaunay_graph",
    "knn_graph",
    "mst_graph",
    "neighbour_mean_operator",
    "radius_graph",
    "reference_knn_operator",
    "validate_coords",
]
