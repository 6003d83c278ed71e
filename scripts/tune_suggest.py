"""Rule tune_suggest: rebuild the study from earlier rounds and ask this round's batch of trials."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.tune import suggest  # noqa: E402

doc = suggest(dict(snakemake.params.settings), previous=list(snakemake.input.previous), out=snakemake.output[0])
print(f"round {doc['round']}: {len(doc['trials'])} trials from {doc['sampler']}", file=sys.stderr)
