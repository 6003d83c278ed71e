"""Rule simulate_demo: one deterministic demo input, in both layouts."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.simulate_demo import simulate_demo  # noqa: E402

simulate_demo(snakemake.params.spec, **dict(snakemake.output.items()))
print(f"simulated {snakemake.wildcards.demo}: {snakemake.params.spec}", file=sys.stderr)
