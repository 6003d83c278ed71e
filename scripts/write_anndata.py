"""Rule anndata: the sample's input spots with every target's results -> results/anndata/{sample}.h5ad."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.anndata_out import sample_anndata, write_results_h5ad  # noqa: E402

adata = sample_anndata(
    prepared_path=snakemake.input.data,
    fit_jsons=list(snakemake.params.files["fits"]),
    params_jsons=list(snakemake.params.files["params"]),
    h5ad=snakemake.input.get("h5ad"),
    domains_tsv=snakemake.input.domains,
)
write_results_h5ad(adata, snakemake.output[0])
print(adata, file=sys.stderr)
