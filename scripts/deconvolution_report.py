"""Rule deconvolution_report: cell-type proportion maps, argmax regions and learned edge weights of a sample."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

import pandas as pd  # noqa: E402

from s3r.preprocess import read_prepared  # noqa: E402
from s3r.report.deconvolution import deconvolution_report  # noqa: E402

prepared = read_prepared(snakemake.input.data)
paths = deconvolution_report(
    Path(snakemake.input.proportions).parent,
    Path(snakemake.output.proportions).parent,
    coords=pd.DataFrame(prepared.coords[:, :2], index=prepared.spot_ids),
    title=snakemake.wildcards.sample,
)
print("\n".join(f"{name}: {path}" for name, path in paths.items()), file=sys.stderr)
