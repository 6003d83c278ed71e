"""Rule tune_tell: mean and spread of the held-out loss per trial of one round."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.tune import tell  # noqa: E402

tell(snakemake.input.trials, list(snakemake.input.folds), out=snakemake.output[0])
