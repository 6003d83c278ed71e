"""Benchmark (issue 11): cut pursuit (s3r.solver.cut_pursuit) against the default primal–dual fit, same problem.

Problem: ``working_set.py``'s — ``simulate("three_regions", geometry="uniform", n_spots=n, seed=0, design="expression",
sigma=0.2)``, 100 unit-scale features, kNN k = 7, ``tv``, the default parameterisation (intercept, standardised), the
penalty levels weak / medium / strong of that script, tolerance 1e-5. Both methods solve the same solver-scale problem
(``s3r.problem.assemble`` as ``S3R.fit`` builds it, spots in the solver's locality order), so their objectives compare
directly: ``pdhg`` is ``S3R.fit`` with its defaults (mixed precision, coarse-to-fine, working sets, one thread: the
compiled loop); ``cut_pursuit`` calls the library function on the assembled problem. Each fit runs in a fresh
subprocess (peak RSS is that fit's).

    python benchmarks/cut_pursuit.py one --n 100000 --level medium --method cut_pursuit    # JSON on stdout
    python benchmarks/cut_pursuit.py grid --sizes 10000 100000 --levels weak medium strong   # both methods, appended
    python benchmarks/cut_pursuit.py table                                                  # markdown

Results: ``benchmarks/out/cut_pursuit.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_common import provenance
from working_set import LEVELS, TOL

OUT = Path(__file__).resolve().parent / "out"


def one(args) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from s3r import S3R
    from s3r.graph import knn_graph
    from s3r.problem import assemble
    from s3r.simulate import simulate
    from s3r.solver.cut_pursuit import cut_pursuit

    load_before = os.getloadavg()
    sim = simulate("three_regions", geometry="uniform", n_spots=args.n, seed=0, design="expression", sigma=0.2)
    truth = set(sum(sim.informative.values(), []))
    graph = knn_graph(sim.coords, k=7)
    params = LEVELS[args.level]
    model = S3R("tv", **params, k=7, tol=TOL, max_iter=20_000)
    cpu0, t0 = time.process_time(), time.perf_counter()
    if args.method == "pdhg":
        model.fit(sim.X, sim.y, sim.coords, spot_graph=graph)
        r = model.report_
        out = {"converged": r["converged"], "iterations": r["iterations"], "objective": r["objective"],
               "selected": np.flatnonzero(np.any(model.coef_ != 0, axis=0)).tolist()}
    else:
        problem = assemble(sim.X, sim.y, sim.coords, model=model.model_settings(), graph=graph)
        lam, alpha, beta = (float(np.asarray(v).reshape(-1)[0]) for v in problem.solver_penalties(params["lambda_smooth"], params["alpha"], params["beta"]))
        found = problem.operator.locality_order()
        order, op = (np.arange(args.n), problem.operator) if found is None else (found[0], found[2])
        edges = np.stack([op._src.numpy(), op._dst.numpy()], 1)
        Z = None if problem.covariates is None else problem.covariates[order]
        res = cut_pursuit(problem.X[order], problem.y[order], lambda_smooth=lam, alpha=alpha, beta=beta, edges=edges,
                          edge_weights=op._w.view(-1).double().numpy(), covariates=Z, tol=TOL)
        out = {"converged": res.converged, "iterations": res.reduced_iterations, "objective": res.objective, "slope": res.slope,
               "refinements": res.refinements, "components": res.components, "selected": sorted(res.working_set),
               "history": res.history}
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"provenance": provenance(), "method": args.method, "n": args.n, "level": args.level, "params": params, **out,
            "true_selected": len(set(out["selected"]) & truth), "true_features": len(truth), "fit_wall_seconds": wall,
            "fit_cpu_seconds": cpu, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def grid(args) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        for level in args.levels:
            for method in args.methods:
                cmd = [sys.executable, __file__, "one", "--n", str(n), "--level", level, "--method", method]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
                if proc.returncode != 0:
                    print(f"n={n} {level} {method}: failed\n{proc.stderr[-2000:]}", file=sys.stderr, flush=True)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                with (OUT / "cut_pursuit.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(line(row), flush=True)


def line(row: dict) -> str:
    extra = f"{row['refinements']} / {row['components']:,}" if row["method"] == "cut_pursuit" else "–"
    return (f"| {row['n']:,} | {row['level']} | {row['method']} | {'yes' if row['converged'] else 'NO'} | {row['iterations']:,} | {extra} | "
            f"{row['fit_wall_seconds']:.1f} | {row['fit_cpu_seconds']:.1f} | {row['peak_rss_gib']:.2f} | {row['objective']:.10g} | "
            f"{len(row['selected'])} ({row['true_selected']}/{row['true_features']}) | {row['loadavg_before'][0]:.1f}–{row['loadavg_after'][0]:.1f} |")


def table(_args) -> None:
    print("| spots | penalties | method | converged | iterations (PDHG; cut pursuit: reduced) | refinements / pieces | wall s | "
          "CPU s | peak RSS GiB | objective | selected (true) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for raw in (OUT / "cut_pursuit.jsonl").read_text().splitlines():
        print(line(json.loads(raw)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("one")
    o.add_argument("--n", type=int, required=True)
    o.add_argument("--level", default="medium", choices=list(LEVELS))
    o.add_argument("--method", default="cut_pursuit", choices=["cut_pursuit", "pdhg"])
    g = sub.add_parser("grid")
    g.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    g.add_argument("--levels", nargs="+", default=list(LEVELS))
    g.add_argument("--methods", nargs="+", default=["pdhg", "cut_pursuit"])
    sub.add_parser("table")
    args = parser.parse_args()
    if args.cmd == "one":
        print(json.dumps(one(args)))
    else:
        {"grid": grid, "table": table}[args.cmd](args)


if __name__ == "__main__":
    main()
