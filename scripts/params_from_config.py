"""Rule params_from_config: model parameters without tuning (config 'model' + the sample's overrides)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.artifacts import write_params  # noqa: E402

write_params(
    snakemake.output[0], dict(snakemake.params.settings), source="config",
    sample=snakemake.wildcards.sample, target=snakemake.wildcards.target,
)
