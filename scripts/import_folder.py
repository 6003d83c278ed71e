"""Rule import_folder: a Space Ranger or Xenium outs/ folder -> results/input/{sample}.h5ad (raw counts)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.anndata_out import write_results_h5ad  # noqa: E402
from s3r.readers import read_spatial  # noqa: E402

source = snakemake.params.source
adata = read_spatial(source["kind"], source["path"], bin_size=source.get("bin_size"))
write_results_h5ad(adata, snakemake.output[0])
print(f"{source['kind']} {source['path']}: {adata.n_obs} spots/cells x {adata.n_vars} genes", file=sys.stderr)
