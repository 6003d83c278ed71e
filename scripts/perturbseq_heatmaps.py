"""Rule perturbseq_heatmaps: clustered heatmaps of a screen's coefficients and programme scores."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import _s3r_path  # noqa: E402,F401
from s3r.workflow_perturbseq import plot_screen  # noqa: E402

plot_screen(**dict(snakemake.input.items()), **dict(snakemake.output.items()), title=snakemake.wildcards.screen)
