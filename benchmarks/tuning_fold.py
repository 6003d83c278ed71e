"""One round-0 fold job of ``s3r tune`` (defaults: 10 trials, float32, tol 1e-2, ≤ 500 iterations in chunks of 100)
on working_set.py's simulated problem, with what each trial's working set did (issue 11: at 10⁵ spots the chunks
never converged, so the sets never grew and the CV ranked maps restricted to the start set).

Data: ``simulate("three_regions", geometry="uniform", n_spots=N, n_features=P, seed=0, design="expression",
sigma=0.2)``, the tuning's defaults (``resolve_config({})``), fold 0, round 0's trials. One process, one thread.

    OMP_NUM_THREADS=1 python benchmarks/tuning_fold.py N [P [TOL MAX_ITER CHUNK]]    # prints one JSON line

(TOL MAX_ITER CHUNK, default the tuning's 1e-2 500 100: e.g. 1e-4 5000 5000 for reference losses.)

Per trial: held-out loss, converged, iterations, features of the final map, the working-set size each chunk's solve
ended with; per job: CPU and wall seconds of the fold's solves, peak RSS (ru_maxrss), load before and after.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import s3r.cv.solve as cv_solve
    from s3r.io.data import RegressionData
    from s3r.simulate import simulate
    from s3r.cv.folds import training_weights
    from s3r.tune.evaluate import evaluate_fold, make_folds, make_problem
    from s3r.tune.space import absolute_params, resolve_config
    from s3r.tune.study import suggest

    n = int(sys.argv[1])
    p = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    sim = simulate("three_regions", geometry="uniform", n_spots=n, n_features=p, seed=0, design="expression", sigma=0.2)
    data = RegressionData(X=sim.X, y=sim.y, coords=sim.coords, spot_ids=[f"s{i}" for i in range(n)],
                          feature_names=[f"f{j}" for j in range(p)], target_name="y")
    del sim
    solver = {} if len(sys.argv) < 6 else {"tol": float(sys.argv[3]), "max_iter": int(sys.argv[4]), "chunk": int(sys.argv[5])}
    config = resolve_config({"solver": solver})
    problem = make_problem(data, config)
    scales = problem.natural_scales()
    trials = suggest(config, [], None)
    calls: list[tuple[list[float], int]] = []  # per solve_batch call: its problems' λ (which trials) and the set size
    real = cv_solve.solve_batch

    def recorded(*args, **kwargs):
        res = real(*args, **kwargs)
        info = getattr(res, "working_set", None) or {}
        calls.append((np.atleast_1d(kwargs["lambda_smooth"]).tolist(), int(info.get("size", -1))))
        return res

    cv_solve.solve_batch = recorded
    folds = make_folds(problem.coords, config)
    params = [t.get("search") or t["params"] for t in trials["trials"]]
    trial_lams = cv_solve._penalties(problem, [absolute_params(config, t, scales) for t in params], training_weights(folds, 0))[0]
    load0, cpu, wall = load(), time.process_time(), time.perf_counter()
    res = evaluate_fold(None, config, trials, 0, None, problem=problem, scales=scales)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out = {
        "n": n, "p": p, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "load": [load0, load()], "solves": len(calls),
        "trials": [{**{k: tr[k] for k in ("number", "loss", "converged", "iterations", "features")},
                    "sets": [size for lams, size in calls if any(np.isclose(lam, x, rtol=1e-9) for x in lams)]}
                   for tr, lam in zip(res["trials"], trial_lams)],
        "problem_iterations": int(sum(tr["iterations"] for tr in res["trials"])),
        "converged": int(sum(tr["converged"] for tr in res["trials"])),
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
