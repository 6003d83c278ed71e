"""CPU seconds of a whole tuning and what it selects, per solver batch setting (issue 13: a change to the tuning's
solves must not change what is selected). The default tuning (ROUNDS, TRIALS from the environment: 3 and 30) of the
first N_TARGETS DLPFC targets of workflow_scale.py that have counts, through the workflow's chunk functions in this
process, once per BATCH (``tune.solver.batch``); ``BATCH:0`` runs it without the PDHG's per-problem exit
(``s3r.solver.primal_dual.EXIT``, the loop before issue 13's session 12), ``BATCH:1`` with it (the default).

    OMP_NUM_THREADS=1 python benchmarks/tuning_cost.py N_TARGETS OUT BATCH[:EXIT] [BATCH[:EXIT] ...]
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def tune_chunk(prepared, graph, settings: dict, targets: list[str], out: Path) -> list[Path]:
    from s3r.workflow.tuning import evaluate_chunk, suggest_chunk, tell_chunk

    results: list[Path] = []
    for r in range(settings["rounds"]):
        rd = out / f"round_{r}"
        suggest_chunk(settings, targets, results, rd / "trials.json")
        folds = []
        for k in range(settings["folds"]):
            warm = [out / f"round_{q}" / f"fold_{k}.npz" for q in range(r)]
            evaluate_chunk(prepared, graph, settings, targets, rd / "trials.json", k, warm_from=warm, out=rd / f"fold_{k}.json",
                           state_out=rd / f"fold_{k}.npz")
            folds.append(rd / f"fold_{k}.json")
        tell_chunk(rd / "trials.json", folds, targets, rd / "results.json")
        results.append(rd / "results.json")
    return results


def prepared_targets(n: int, root: Path):
    """The DLPFC sample prepared with workflow_scale.py's regulators, its first ``n`` targets that vary, and its kNN
    graph (k = 7)."""
    import workflow_scale as ws

    from s3r.graph import build_graph
    from s3r.preprocess import prepare_h5ad

    root.mkdir(parents=True, exist_ok=True)
    regulators, targets = ws.choose_genes(3 * n)
    with open(root / "prepare.log", "w") as log:
        prepared = prepare_h5ad(str(ws.DATA), targets=targets, features=regulators, log=log)
    keep = [t for t in targets if np.ptp(prepared.regression_data(t).y) > 0][:n]
    return prepared, keep, build_graph(prepared.coords, "knn", k=7)


def main() -> None:
    import torch
    import workflow_scale as ws

    import s3r.solver.primal_dual as pdhg

    from s3r import tune

    torch.set_num_threads(1)
    n, root, batches = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    prepared, keep, graph = prepared_targets(n, root)
    print("targets", keep, flush=True)
    default_exit = pdhg.EXIT
    for arg in batches:
        b, _, flag = arg.partition(":")
        pdhg.EXIT = default_exit if flag == "" else bool(int(flag))
        settings = tune.resolve_config({"solver": {"batch": int(b)}, "rounds": int(os.environ.get("ROUNDS", 3)),
                                        "n_trials": int(os.environ.get("TRIALS", 30))})
        cpu, wall = time.process_time(), time.perf_counter()
        results = tune_chunk(prepared, graph, settings, keep, root / f"batch_{arg.replace(':', '_')}")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        docs = [json.loads(p.read_text())["targets"] for p in results]
        for t in keep:
            ch = tune.select([d[t] for d in docs], settings)
            print(f"batch {arg} {t}: trial {ch['trial']} " + " ".join(f"{k}={ch[k]:.4g}" for k in tune.PARAM_NAMES)
                  + f" cv={ch['cv_loss']:.5f} best={ch['best_trial']} trend={ch['trend_cv_loss']} verdict={ch['verdict'][:60]!r}", flush=True)
        print(f"batch {arg}: {cpu:.0f} s CPU, {wall:.0f} s wall, {len(keep)} targets, load {ws.load()}", flush=True)


if __name__ == "__main__":
    main()
