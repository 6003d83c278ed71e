"""Rule simulate_perturbseq_demo: a small perturb-seq AnnData file with planted effects and its GMT (deterministic)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.perturb import simulate_perturbseq_h5ad  # noqa: E402

simulate_perturbseq_h5ad(snakemake.output.h5ad, gmt=snakemake.output.gmt, **dict(snakemake.params.spec))
print(f"simulated {snakemake.wildcards.psdemo}: {dict(snakemake.params.spec)}", file=sys.stderr)
