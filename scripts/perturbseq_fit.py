"""Rule perturbseq_fit: one screen's batched elastic net, coefficient matrix, gene programmes and scores."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")

import torch  # noqa: E402

import _s3r_path  # noqa: E402,F401
from s3r.workflow_perturbseq import run_screen  # noqa: E402

torch.set_num_threads(snakemake.threads)
outputs = {key: snakemake.output[key] for key in ("coefficients", "programmes", "programme_scores", "gene_scores", "summary")}
run_screen(snakemake.params.spec, snakemake.params.settings, outputs=outputs, device="cpu", log=sys.stderr)
