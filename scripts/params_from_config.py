"""Rule params_from_config: model parameters without tuning (config 'model' + the sample's overrides), per target."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.workflow.tuning import write_config_params  # noqa: E402

write_config_params(dict(snakemake.params.settings), list(snakemake.params.targets), snakemake.wildcards.sample, snakemake.output[0])
