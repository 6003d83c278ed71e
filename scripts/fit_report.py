"""Rule fit_report: figures and tables of every fit of a chunk (and its tuning, when tuning ran), one directory each."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.report.fit_report import fit_reports  # noqa: E402
from s3r.report.tissue import load_tissue  # noqa: E402

tissue = load_tissue(snakemake.input.get("h5ad"))
print(f"maps over the tissue image ({tissue.resolution})" if tissue else "plain maps (no tissue image)", file=sys.stderr, flush=True)
fit_reports(
    snakemake.input.fits, snakemake.output[0], list(snakemake.params.targets), tune_dir=snakemake.input.tune,
    title_prefix=f"{snakemake.wildcards.sample} / ", processes=snakemake.threads, max_features=snakemake.params.max_features,
    domains_k=snakemake.params.domains_k, tissue=tissue, vector=snakemake.params.vector,
)
