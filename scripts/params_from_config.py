"""Rule params_from_config: model parameters without tuning (config 'model' + the sample's overrides)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

import _s3r_path  # noqa: E402,F401
from s3r.io import write_json  # noqa: E402

write_json(
    {
        "sample": snakemake.wildcards.sample,
        "target": snakemake.wildcards.target,
        "source": "config",
        "params": dict(snakemake.params.settings),
    },
    snakemake.output[0],
)
