"""Rule graph: the sample's spot graph, stored for reuse by every fit."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.graph import build_graph  # noqa: E402
from s3r.graph_io import graph_summary, write_graph  # noqa: E402
from s3r.io import write_json  # noqa: E402
from s3r.preprocess import read_prepared  # noqa: E402

settings = snakemake.params.settings
coords = read_prepared(snakemake.input[0]).coords
graph = build_graph(
    coords,
    settings["method"],
    k=settings["k"],
    radius=settings["radius"],
    max_edge_length=settings["max_edge_length"],
)
summary = graph_summary(graph, sample=snakemake.wildcards.sample, settings=settings)
write_graph(snakemake.output.graph, graph)
write_json(summary, snakemake.output.summary)
if summary["n_components"] > 1:
    print(f"warning: the graph has {summary['n_components']} components; smoothing acts within each", file=sys.stderr)
print(summary, file=sys.stderr)
