"""The final fits of tuned DLPFC targets, cold against started from the chosen trial's fold solutions (issue 13).

The default tuning of the first N targets of workflow_scale.py (through the workflow's chunk functions, as
tuning_cost.py runs it), the selection as tune_select writes it, then each target's final fit (S3R defaults, tol
1e-5, mixed precision) twice in this process: cold, and from :func:`s3r.tune.files.chosen_start`. Reported per
target: CPU seconds, iterations, objectives (relative difference).

    OMP_NUM_THREADS=1 python benchmarks/final_fit_start.py N_TARGETS OUT
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import torch
    from tuning_cost import prepared_targets, tune_chunk

    from s3r import S3R, tune
    from s3r.artifacts import read_params_file
    from s3r.tune.files import chosen_start
    from s3r.workflow.tuning import select_chunk

    torch.set_num_threads(1)
    n, root = int(sys.argv[1]), Path(sys.argv[2])
    prepared, keep, graph = prepared_targets(n, root)
    settings = tune.resolve_config({})
    cpu = time.process_time()
    results = [root / "tune" / f"round_{r}" / "results.json" for r in range(settings["rounds"])]
    if not all(p.exists() for p in results):  # a rerun on the same OUT reuses the tuning
        results = tune_chunk(prepared, graph, settings, keep, root / "tune")
        print(f"tuning: {time.process_time() - cpu:.0f} CPU-s for {len(keep)} targets, load {os.getloadavg()[0]:.1f}", flush=True)
    states = {(r, k): root / "tune" / f"round_{r}" / f"fold_{k}.npz" for r in range(settings["rounds"]) for k in range(settings["folds"])}
    select_chunk(settings, {}, keep, results, states, "dlpfc", root / "targets")
    totals = {"cold": 0.0, "start": 0.0}
    for t in keep:
        chosen = read_params_file(root / "targets" / t / "best_params.json")
        data = prepared.regression_data(t)
        row = {}
        for mode in ("cold", "start"):
            start = chosen_start(root / "targets" / t) if mode == "start" else None
            c0 = time.process_time()
            m = S3R(**chosen["params"], device="cpu").fit(data.X, data.y, data.coords, covariates=data.covariates, spot_graph=graph,
                                                        offset=prepared.offset, start=start)
            row[mode] = (time.process_time() - c0, m.report_["iterations"], m.report_["objective"], m.report_["converged"],
                         m.report_["constant_start"])
            totals[mode] += row[mode][0]
        rel = abs(row["start"][2] - row["cold"][2]) / abs(row["cold"][2])
        print(f"{t}: cold {row['cold'][0]:.1f} CPU-s {row['cold'][1]} its | start {row['start'][0]:.1f} CPU-s {row['start'][1]} its | "
              f"converged {row['cold'][3]}/{row['start'][3]} objective rel diff {rel:.1e} constant start (cold) {row['cold'][4]}", flush=True)
    print(json.dumps({k: round(v, 1) for k, v in totals.items()}), f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
