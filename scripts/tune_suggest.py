"""Rule tune_suggest: each target of the chunk rebuilds its study from earlier rounds and asks this round's trials."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.workflow.tuning import suggest_chunk  # noqa: E402

doc = suggest_chunk(dict(snakemake.params.settings), list(snakemake.params.targets), list(snakemake.input.previous), snakemake.output[0])
print(f"round {doc['round']}: {len(doc['targets'])} targets", file=sys.stderr)
