"""Rule tune_select: each target's λ, α, β and its tuning directory (tables, study for optuna-dashboard)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.workflow.tuning import select_chunk  # noqa: E402

select_chunk(
    dict(snakemake.params.settings), dict(snakemake.params.model), list(snakemake.params.targets), list(snakemake.input.results),
    {(int(r), int(k)): path for r, k, path in snakemake.params.states}, snakemake.wildcards.sample, snakemake.output.targets,
    trials_table=snakemake.output.trials,
)
