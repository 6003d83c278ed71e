"""Rule tune_fold: every trial of one round on one cross-validation fold, solved as one batch."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")

import torch  # noqa: E402

from s3r.preprocess import read_prepared  # noqa: E402
from s3r.tune import evaluate_fold  # noqa: E402
from s3r.solver.device import choose_device  # noqa: E402

torch.set_num_threads(snakemake.threads)
settings = dict(snakemake.params.settings)
settings["solver"] = {**settings.get("solver", {}), "device": choose_device(snakemake.resources.get("gpu", 0))}
prepared = read_prepared(snakemake.input.data)
data = prepared.regression_data(snakemake.wildcards.target)
where = f"sample {snakemake.wildcards.sample}, target {snakemake.wildcards.target}, round {snakemake.wildcards.round}, fold {snakemake.wildcards.fold}"
try:
    result = evaluate_fold(
        data, settings, snakemake.input.trials, int(snakemake.wildcards.fold),
        out=snakemake.output.scores, warm_from=list(snakemake.input.warm), state_out=snakemake.output.state,
        offset=prepared.offset,
    )
except Exception as err:  # one line that says where, then the details for whoever reads the log
    import traceback

    traceback.print_exc()
    raise SystemExit(f"tune_fold failed ({where}): {type(err).__name__}: {err}") from None
print(f"fold {result['fold']}: {len(result['trials'])} trials in {result['seconds']:.2f} s", flush=True)
