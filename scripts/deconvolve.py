"""Rule deconvolve: spatially smooth cell-type proportions for one sample (s3r.deconv)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # the solver's progress goes to stdout

import torch  # noqa: E402

from s3r.solver.device import choose_device  # noqa: E402
from s3r.workflow.jobs import run_deconvolution  # noqa: E402

torch.set_num_threads(snakemake.threads)  # the CPUs this job was given, not every core of the node
run_deconvolution(
    snakemake.params.spec,
    dict(snakemake.input.items()),
    proportions=snakemake.output.proportions,
    mixture=snakemake.output.mixture,
    summary=snakemake.output.summary,
    dictionary=snakemake.output.dictionary,
    edge_weights=snakemake.output.edge_weights,
    device=choose_device(snakemake.resources.get("gpu", 0)),
)
