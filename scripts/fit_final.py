"""Rule fit_final: fit S3R for one (sample, target) and write coefficients and fit metadata."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # the solver's progress goes to stdout

from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from s3r import S3R  # noqa: E402
from s3r.artifacts import read_params_file  # noqa: E402
from s3r.counts import describe as describe_normalisation  # noqa: E402
from s3r.preprocess import read_prepared  # noqa: E402
from s3r.results import write_fit  # noqa: E402
from s3r.graph_io import read_graph  # noqa: E402
from s3r.solver.device import choose_device  # noqa: E402

torch.set_num_threads(snakemake.threads)  # the CPUs this job was given, not every core of the node
sample, target = snakemake.wildcards.sample, snakemake.wildcards.target
chosen = read_params_file(snakemake.input.params)
device = choose_device(snakemake.resources.get("gpu", 0))
prepared = read_prepared(snakemake.input.data)
data = prepared.regression_data(target)
graph = read_graph(snakemake.input.graph)
print(f"{sample}/{target}: {data.n_spots} spots, {data.n_features} features, device {device}", flush=True)

params = dict(chosen["params"])
params.pop("offset", None)  # which offset: a preprocessing choice, the values are in the prepared sample
model = S3R(**params, device=device, verbose=True)
model.fit(data.X, data.y, data.coords, covariates=data.covariates, graph=graph, offset=prepared.offset)
write_fit(
    Path(snakemake.output.fit).parent,
    model,
    data,
    params={"sample": sample, "params_source": chosen["source"] or "unknown",
            **{key: chosen["tuning"][key] for key in ("effect_found", "verdict", "warnings", "null_cv_loss", "trend_cv_loss", "cv_loss")
               if key in (chosen["tuning"] or {})}},
    inputs=dict(snakemake.input.items()),
    offset=prepared.offset,
    normalisation=describe_normalisation(prepared.info),
)
print(model.report_, flush=True)
