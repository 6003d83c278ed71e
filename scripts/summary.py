"""Rule summary: one row per (sample, target) over the whole batch, with the tuning's CV loss."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.io import write_csv  # noqa: E402
from s3r.report.summary import summarise_fits  # noqa: E402

pairs = snakemake.params.pairs  # [sample, target, fit.json, best_params.json]: paired by name, not position
params = {(sample, target): best for sample, target, _, best in pairs}
table = summarise_fits([fit for _, _, fit, _ in pairs], list(snakemake.input.graphs), params)
write_csv(table, snakemake.output[0], sep="\t", index=False)
print(table.to_string(), file=sys.stderr)
