"""Rule graph: the sample's spot graph, stored for reuse by every fit."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import _s3r_path  # noqa: E402,F401
from s3r.graph import build_graph  # noqa: E402
from s3r.io import write_json  # noqa: E402
from s3r.preprocess import read_prepared  # noqa: E402
from s3r.workflow_support import write_graph  # noqa: E402

settings = snakemake.params.settings
coords = read_prepared(snakemake.input[0]).coords
graph = build_graph(
    coords,
    settings["method"],
    k=settings["k"],
    radius=settings["radius"],
    max_edge_length=settings["max_edge_length"],
)
n_components, _ = graph.components()
degrees = graph.degrees()
summary = {
    "sample": snakemake.wildcards.sample,
    "settings": settings,
    "n_nodes": graph.n_nodes,
    "n_edges": graph.n_edges,
    "n_components": n_components,
    "isolated_spots": int((degrees == 0).sum()),
    "mean_degree": float(degrees.mean()) if graph.n_nodes else 0.0,
}
write_graph(snakemake.output.graph, graph)
write_json(summary, snakemake.output.summary)
if n_components > 1:
    print(f"warning: the graph has {n_components} components; smoothing acts within each", file=sys.stderr)
print(summary, file=sys.stderr)
