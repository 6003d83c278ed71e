"""Rule sample_report: spatial domains over all targets of a sample, and its coefficient programmes."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

from s3r.report.sample import sample_report  # noqa: E402
from s3r.report.tissue import load_tissue  # noqa: E402

settings = snakemake.params.settings
paths = sample_report(
    dict(zip(snakemake.params.targets, snakemake.params.npz)),
    Path(snakemake.output.domains).parent,
    k=settings["domains_k"],
    n_programmes=settings["n_programmes"],
    threshold=settings["programme_threshold"],
    title=snakemake.wildcards.sample,
    tissue=load_tissue(snakemake.input.get("h5ad")),
)
print("\n".join(f"{name}: {path}" for name, path in paths.items()), file=sys.stderr)
