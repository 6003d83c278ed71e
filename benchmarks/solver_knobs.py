"""Benchmark (issue 11): iterations and CPU of one working-set fit, with solver constants overridden.

The data and penalties are ``working_set.py``'s (unit-scale expression design, p = 100, kNN k = 7, ``tv``, tol
1e-5). Any module constant of ``s3r.solver.primal_dual`` or ``s3r.solver.working_set`` can be set for the run
(``RELAX=1.9``, ``DATA_SHARE=0.25``, ``COARSE_TOL=0``), so a candidate default is measured against the current one
on the same problem. Prints the residual trace (15 rows) and one JSON line; one thread, CPU seconds.

    python benchmarks/solver_knobs.py 1000 medium [RELAX=1.9 ...]
    python benchmarks/solver_knobs.py 100000 medium --profile --max-iter 200   # where the CPU goes (cProfile)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time

import torch

import s3r.solver.primal_dual as pd
import s3r.solver.working_set as wsm
from s3r import S3R
from s3r.graph import knn_graph
from s3r.simulate import simulate
from working_set import LEVELS, TOL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int)
    parser.add_argument("level", choices=list(LEVELS))
    parser.add_argument("set", nargs="*", help="NAME=VALUE constants of primal_dual / working_set")
    parser.add_argument("--max-iter", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    for item in args.set:
        name, value = item.split("=")
        module = wsm if hasattr(wsm, name) else pd
        setattr(module, name, type(getattr(module, name))(float(value)))
    torch.set_num_threads(1)
    sim = simulate("three_regions", geometry="uniform", n_spots=args.n, seed=0, design="expression", sigma=0.2)
    graph = knn_graph(sim.coords, k=7)
    log: list[dict] = []
    model = S3R("tv", **LEVELS[args.level], k=7, tol=TOL, max_iter=args.max_iter, callback=log.append)
    prof = cProfile.Profile(time.process_time) if args.profile else None
    cpu = time.process_time()
    if prof:
        prof.enable()
    model.fit(sim.X, sim.y, sim.coords, spot_graph=graph)
    if prof:
        prof.disable()
    cpu = time.process_time() - cpu
    for e in log[:: max(1, len(log) // 15)]:
        print(e["iteration"], e.get("working_set"), f"{e['primal_residual'][0]:.2e} {e['dual_residual'][0]:.2e}")
    r, ws = model.report_, model._result.working_set or {}
    print(json.dumps({"n": args.n, "level": args.level, "set": args.set, "converged": r["converged"], "iterations": r["iterations"],
                      "cpu_s": round(cpu, 2), "objective": r["objective"], "sizes": ws.get("sizes"), "checks": ws.get("checks"),
                      "load": os.getloadavg()[0]}))
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
