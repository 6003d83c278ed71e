"""Rule tune_select: choose λ, α, β from every round, write the tables and the study for optuna-dashboard."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path  # noqa: E402

from s3r.artifacts import write_params  # noqa: E402
from s3r.tune import PARAM_NAMES, export_study, select, write_tables  # noqa: E402

settings = dict(snakemake.params.settings)
results = list(snakemake.input.results)
chosen = select(results, settings)
params = dict(snakemake.params.model)
params.update({name: chosen[name] for name in PARAM_NAMES})
write_tables(results, Path(snakemake.output.trials).parent)
export_study(results, settings, snakemake.output.study)
write_params(
    snakemake.output.best, params, source="tune", tuning=chosen,
    sample=snakemake.wildcards.sample, target=snakemake.wildcards.target,
)
