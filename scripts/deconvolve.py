"""Rules deconvolve (components mode) and deconvolve_proportions (a reference): one sample's deconvolution.

One script for both rules: the preamble (log, threads, device) is the same, and each rule's named outputs are
the keyword arguments of its runner in s3r.workflow.jobs.
"""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # the solver's progress goes to stdout

import torch  # noqa: E402

from s3r.solver.device import choose_device  # noqa: E402
from s3r.workflow.jobs import run_deconvolution, run_proportions  # noqa: E402

torch.set_num_threads(snakemake.threads)  # the CPUs this job was given, not every core of the node
runner = run_proportions if snakemake.rule == "deconvolve_proportions" else run_deconvolution
runner(
    snakemake.params.spec,
    dict(snakemake.input.items()),
    **dict(snakemake.output.items()),
    device=choose_device(snakemake.resources.get("gpu", 0)),
)
