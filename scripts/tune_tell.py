"""Rule tune_tell: mean and spread of the held-out loss per trial of one round, for every target of the chunk."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.workflow.tuning import tell_chunk  # noqa: E402

tell_chunk(snakemake.input.trials, list(snakemake.input.folds), list(snakemake.params.targets), snakemake.output[0])
