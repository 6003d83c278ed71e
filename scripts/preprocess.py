"""Rule preprocess: one sample's input -> results/preprocessed/{sample}.npz."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from s3r.preprocess import prepare_h5ad, prepare_reference_csv, write_prepared  # noqa: E402
from s3r.workflow.samples import with_proportions  # noqa: E402

spec = snakemake.params.spec
settings = spec["settings"]
common = dict(
    targets=spec["targets"],
    features=spec["features"],
    normalize=settings["normalize"],
    target_sum=settings["target_sum"],
    max_features=settings["max_features"],
    standardize=settings["standardize"],
    log=sys.stderr,
    raw_targets=spec.get("raw_targets", False),
    offset=spec.get("offset"),
)
if spec["kind"] == "h5ad":
    source = snakemake.input.h5ad
    if "proportions" in snakemake.input.keys():  # features: this run's deconvolution of the sample
        source = with_proportions(source, snakemake.input.proportions)
    prepared = prepare_h5ad(
        source,
        covariates=spec["covariates"] or (),
        layer=spec["layer"],
        spatial_key=spec["spatial_key"],
        **common,
    )
else:
    prepared = prepare_reference_csv(
        snakemake.input.x_csv, snakemake.input.y_csv, snakemake.input.coords_csv, **common
    )
write_prepared(snakemake.output[0], prepared)
print(
    f"{len(prepared.spot_ids)} spots, {len(prepared.feature_names)} features, targets {prepared.target_names}; "
    f"{prepared.info}",
    file=sys.stderr,
)
