"""Rule fit_final: fit S3R for every target of a chunk and write one fit directory per target."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # the solver's progress goes to stdout

import torch  # noqa: E402

from s3r.graph_io import read_graph  # noqa: E402
from s3r.preprocess import read_prepared  # noqa: E402
from s3r.solver.device import choose_device  # noqa: E402
from s3r.workflow.tuning import fit_chunk  # noqa: E402

torch.set_num_threads(snakemake.threads)  # the CPUs this job was given, not every core of the node
fit_chunk(
    read_prepared(snakemake.input.data), read_graph(snakemake.input.graph), list(snakemake.params.targets), snakemake.input.params,
    snakemake.output[0], sample=snakemake.wildcards.sample, device=choose_device(snakemake.resources.get("gpu", 0)),
    inputs=dict(snakemake.input.items()), log=sys.stdout, no_effect=snakemake.params.no_effect,
)
