"""Rule fit_report: figures and tables of one fit (and its tuning, when tuning ran)."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

from s3r.report.fit_report import fit_report  # noqa: E402
from s3r.report.tissue import load_tissue  # noqa: E402

best = snakemake.input.get("best")
tissue = load_tissue(snakemake.input.get("h5ad"))
print(f"maps over the tissue image ({tissue.resolution})" if tissue else "plain maps (no tissue image)", file=sys.stderr)
fit_report(
    Path(snakemake.input.fit).parent,
    Path(snakemake.output.maps).parent,
    tune_dir=Path(best).parent if best else None,
    max_features=snakemake.params.max_features,
    domains_k=snakemake.params.domains_k,
    title=f"{snakemake.wildcards.sample} / {snakemake.wildcards.target}",
    tissue=tissue,
)
