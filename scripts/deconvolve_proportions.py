"""Rule deconvolve_proportions: cell-type proportions of one sample against its reference (s3r.deconv)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # the solver's progress goes to stdout

import torch  # noqa: E402

from s3r.solver.device import choose_device  # noqa: E402
from s3r.workflow.jobs import run_proportions  # noqa: E402

torch.set_num_threads(snakemake.threads)  # the CPUs this job was given, not every core of the node
run_proportions(
    snakemake.params.spec,
    dict(snakemake.input.items()),
    proportions=snakemake.output.proportions,
    edge_weights=snakemake.output.edge_weights,
    lambda_choice=snakemake.output.lambda_choice,
    summary=snakemake.output.summary,
    device=choose_device(snakemake.resources.get("gpu", 0)),
)
