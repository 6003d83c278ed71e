"""Rule fit_report: figures and tables of every fit of a chunk (and its tuning, when tuning ran), one directory each."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

from s3r.report.fit_report import fit_report  # noqa: E402
from s3r.report.tissue import load_tissue  # noqa: E402

tissue = load_tissue(snakemake.input.get("h5ad"))
print(f"maps over the tissue image ({tissue.resolution})" if tissue else "plain maps (no tissue image)", file=sys.stderr)
for target in snakemake.params.targets:
    tune_dir = Path(snakemake.input.tune) / target
    fit_report(
        Path(snakemake.input.fits) / target,
        Path(snakemake.output[0]) / target,
        tune_dir=tune_dir if (tune_dir / "round_0").is_dir() else None,
        max_features=snakemake.params.max_features,
        domains_k=snakemake.params.domains_k,
        title=f"{snakemake.wildcards.sample} / {target}",
        tissue=tissue,
        vector=snakemake.params.vector,
    )
