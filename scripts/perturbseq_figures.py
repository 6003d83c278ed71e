"""Rule perturbseq_figures: a screen's heatmaps, programme dot plot, penalty selection and enrichment plots."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.workflow.jobs import plot_screen  # noqa: E402

plot_screen(**dict(snakemake.input.items()), **dict(snakemake.output.items()), title=snakemake.wildcards.screen)
