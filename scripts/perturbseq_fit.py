"""Rule perturbseq_fit: one screen's batched elastic net (W, M), programmes, modules, per-cell programme scores,
their tests against the control, enrichment and the penalty-selection table."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")

import torch  # noqa: E402

from s3r.workflow.jobs import OUTPUT_TABLES, run_screen  # noqa: E402

torch.set_num_threads(snakemake.threads)
outputs = {key: snakemake.output[key] for key in OUTPUT_TABLES}
run_screen(snakemake.params.spec, snakemake.params.settings, outputs=outputs, device="cpu", log=sys.stderr)
