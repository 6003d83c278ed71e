"""Rule coefficient_maps: spatial maps of the strongest coefficients of one fit."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import _s3r_path  # noqa: E402,F401
from s3r.workflow_support import plot_coefficient_maps  # noqa: E402

plot_coefficient_maps(
    snakemake.input.npz,
    snakemake.input.fit,
    snakemake.output[0],
    max_features=snakemake.params.max_features,
    title=f"{snakemake.wildcards.sample} / {snakemake.wildcards.target}",
)
