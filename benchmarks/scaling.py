"""Benchmark (b): seconds to convergence and peak memory at n = 1k, 10k, 100k spots, p = 100, kNN k = 7, tv.

Data: ``s3r.simulate.simulate("three_regions", geometry="uniform", n_spots=n, seed=0)`` (p = 100, 3 regions,
5 informative features each, y sd ≈ 100, σ = 1). Parameters: the objective has a data fit that is a *mean*
over spots but penalties that are *sums*, so fixed λ, α, β mean ever stronger penalties as n grows; to fit
the same kind of solution at every size they are scaled as λ = λ₀·1000/n, α = α₀·1000/n, β = β₀·1000/n
(n·F then has every term of order n), with (λ₀, α₀, β₀) chosen at n = 1000 (see ``BASE``).

Each size × dtype runs in a fresh subprocess so that ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is that
fit's peak resident memory (it includes the ~0.3–0.4 GiB of the interpreter, torch and the data, reported
separately as ``rss_before_fit``).

    python benchmarks/scaling.py run [--sizes 1000 10000 100000] [--dtypes float64 float32] [--threads 2]
    python benchmarks/scaling.py one --n 100000 --dtype float32 --threads 2     # one fit, JSON on stdout
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

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
BASE = {"lambda_smooth": 0.05, "alpha": 0.02, "beta": 0.05}  # at n = 1000; scaled by 1000/n
TOL = 1e-5  # the estimator's and `s3r fit`'s default
MAX_ITER = 20_000




def params_for(n: int) -> dict:
    return {key: value * 1000.0 / n for key, value in BASE.items()}


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def one(args) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from s3r import S3R
    from s3r.graph import knn_graph
    from s3r.simulate import simulate

    t0 = time.perf_counter()
    sim = simulate("three_regions", geometry="uniform", n_spots=args.n, seed=0)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = knn_graph(sim.coords, k=7)
    t_graph = time.perf_counter() - t0
    rss_before = rss_gib()
    params = params_for(args.n)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    tag = "_malloc" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else ""
    progress = OUT / f"scaling_progress_n{args.n}_{args.dtype}_t{args.threads}{tag}.txt"
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text("iteration objective primal dual wall_s cpu_s peak_rss_gib\n")

    def log(entry):  # every 100 iterations: progress of long fits, for extrapolation if one is stopped
        with progress.open("a") as fh:
            fh.write(
                f"{entry['iteration']} {entry['objective'][0]:.10g} {entry['primal_residual'][0]:.3e} {entry['dual_residual'][0]:.3e} "
                f"{time.perf_counter() - t0:.1f} {time.process_time() - cpu0:.1f} {rss_gib():.3f}\n"
            )

    model = S3R("tv", **params, k=7, dtype=args.dtype, tol=TOL, max_iter=MAX_ITER, callback=log)
    model.fit(sim.X, sim.y, sim.coords, spot_graph=graph)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    r = model.report_
    true_support = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(model.coef_ != 0, axis=0)).tolist())
    return {
        "provenance": provenance(),
        "n": args.n,
        "p": sim.n_features,
        "n_edges": graph.n_edges,
        "dtype": args.dtype,
        "threads": args.threads,
        "params": params,
        "converged": r["converged"],
        "iterations": r["iterations"],
        "solve_seconds": r["solve_seconds"],
        "fit_wall_seconds": wall,
        "fit_cpu_seconds": cpu,
        "simulate_seconds": t_sim,
        "graph_seconds": t_graph,
        "objective": r["objective"],
        "primal_residual": r["primal_residual"],
        "dual_residual": r["dual_residual"],
        "selected_features": len(selected),
        "true_features_selected": len(selected & true_support),
        "true_features": len(true_support),
        "nonzero_fraction": r["nonzero_fraction"],
        "rmse_W": float(np.sqrt(np.mean((model.coef_ - sim.W) ** 2))),
        "rss_before_fit_gib": rss_before,
        "peak_rss_gib": rss_gib(),
    }


def run(args) -> list:
    OUT.mkdir(parents=True, exist_ok=True)
    out_path = OUT / f"scaling{args.tag}.json"
    rows = json.loads(out_path.read_text()) if out_path.exists() and args.append else []
    for n in args.sizes:
        for dtype in args.dtypes:
            cmd = [sys.executable, __file__, "one", "--n", str(n), "--dtype", dtype, "--threads", str(args.threads)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"n={n} {dtype}: failed\n{proc.stderr}", file=sys.stderr)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["process_wall_seconds"] = time.perf_counter() - t0
            rows = [r for r in rows if not (r["n"] == n and r["dtype"] == dtype and r["threads"] == args.threads)] + [row]
            out_path.write_text(json.dumps(rows, indent=1))
            print(
                f"n={n:>6} {dtype} threads={args.threads}: {'converged' if row['converged'] else 'NOT converged'} in {row['iterations']} it, "
                f"solve {row['solve_seconds']:.1f} s (cpu {row['fit_cpu_seconds']:.1f} s), peak RSS {row['peak_rss_gib']:.2f} GiB, "
                f"{row['selected_features']} features ({row['true_features_selected']}/{row['true_features']} true), objective {row['objective']:.6g}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    r.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--append", action="store_true", help="keep earlier rows of benchmarks/out/scaling.json")
    r.add_argument("--tag", default="", help="suffix of the output file (e.g. _malloc for a run under MALLOC_MMAP_MAX_=0)")
    o = sub.add_parser("one")
    o.add_argument("--n", type=int, required=True)
    o.add_argument("--dtype", default="float64")
    o.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.cmd == "one":
        print(json.dumps(one(args)))
    else:
        run(args)


if __name__ == "__main__":
    main()
