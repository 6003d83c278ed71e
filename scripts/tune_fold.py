"""Rule tune_fold: every trial of one round of every target of a chunk on one cross-validation fold, one batch."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")

import time  # noqa: E402

import torch  # noqa: E402

from s3r.graph_io import read_graph  # noqa: E402
from s3r.preprocess import read_prepared  # noqa: E402
from s3r.solver.device import choose_device  # noqa: E402
from s3r.workflow.tuning import evaluate_chunk  # noqa: E402

torch.set_num_threads(snakemake.threads)
start = time.perf_counter()
targets = list(snakemake.params.targets)
where = (f"sample {snakemake.wildcards.sample}, chunk {snakemake.wildcards.chunk} ({len(targets)} targets), "
         f"round {snakemake.wildcards.round}, fold {snakemake.wildcards.fold}")
try:
    evaluate_chunk(
        read_prepared(snakemake.input.data), read_graph(snakemake.input.graph), dict(snakemake.params.settings), targets,
        snakemake.input.trials, int(snakemake.wildcards.fold), warm_from=list(snakemake.input.warm),
        out=snakemake.output.scores, state_out=snakemake.output.state, device=choose_device(snakemake.resources.get("gpu", 0)),
    )
except Exception as err:  # one line that says where, then the details for whoever reads the log
    import traceback

    traceback.print_exc()
    raise SystemExit(f"tune_fold failed ({where}): {type(err).__name__}: {err}") from None
print(f"{where}: {time.perf_counter() - start:.2f} s", flush=True)
