"""GPU benchmark (issue 11, Deliver 6): the working-set benchmark's problems at 10⁵ and 10⁶ spots on CUDA.

The problems are ``working_set.py``'s (unit-scale expression design, p = 100, kNN k = 7, ``tv``, tolerance 1e-5,
weak / medium / strong penalties), so a GPU figure sits beside the CPU rows of the same problem. The target of
issue 11 is 1M × 100 converged in < 60 s on one H200. Each fit runs in its own subprocess (peak memory per fit:
``torch.cuda.max_memory_allocated`` and the process's resident set); rows are appended to
``benchmarks/out/gpu.jsonl`` and printed as a markdown table.

    python benchmarks/gpu.py                                  # 1e5 and 1e6 spots, medium, float32 and float64
    python benchmarks/gpu.py --sizes 100000 --levels weak medium strong --dtypes float32
    python benchmarks/gpu.py --device cpu --sizes 3000        # the same script on the CPU (a dry run)
    python benchmarks/gpu.py --dtypes mixed                   # float32 with a float64 polish only where needed

Without CUDA and without ``--device cpu`` it prints one line saying so and exits 0 (nothing to measure).
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
from working_set import LEVELS, MAX_ITER, TOL

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def one(args) -> dict:
    import numpy as np
    import torch

    from s3r import S3R
    from s3r.graph import knn_graph
    from s3r.simulate import simulate

    t_data = time.perf_counter()
    sim = simulate("three_regions", geometry="uniform", n_spots=args.n, seed=0, design="expression", sigma=0.2)
    graph = knn_graph(sim.coords, k=7)
    t_data = time.perf_counter() - t_data
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    dtype = args.dtype
    if dtype == "mixed":  # float32 solve, float64 polish only where needed: the solver's precision, the fit built in float64
        import s3r.estimator as estimator

        solve = estimator.solve_batch
        estimator.solve_batch = lambda *a, **k: solve(*a, **{**k, "dtype": "mixed"})
        dtype = "float64"
    model = S3R("tv", **LEVELS[args.level], k=7, device=args.device, dtype=dtype, tol=TOL, max_iter=MAX_ITER)
    t0 = time.perf_counter()
    model.fit(sim.X, sim.y, sim.coords, spot_graph=graph)
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    r = model.report_
    truth = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(model.coef_ != 0, axis=0)).tolist())
    return {
        "provenance": provenance(), "device_name": torch.cuda.get_device_name() if cuda else "cpu", "device": args.device,
        "n": args.n, "p": sim.n_features, "n_edges": graph.n_edges, "level": args.level, "dtype": args.dtype,
        "converged": r["converged"], "iterations": r["iterations"], "solve_seconds": r["solve_seconds"], "fit_wall_seconds": wall,
        "data_seconds": t_data, "objective": r["objective"], "selected_features": len(selected),
        "true_selected": len(selected & truth), "working_set": (model._result.working_set or {}).get("size"),
        "gpu_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "precision": model._result.precision,
    }


def line(row: dict) -> str:
    gpu = "–" if row["gpu_peak_gib"] is None else f"{row['gpu_peak_gib']:.2f}"
    return (f"| {row['device_name']} | {row['n']:,} | {row['level']} | {row['dtype']} | {'yes' if row['converged'] else 'NO'} | "
            f"{row['iterations']} | {row['solve_seconds']:.1f} | {row['fit_wall_seconds']:.1f} | {gpu} | {row['peak_rss_gib']:.2f} | "
            f"{row['objective']:.8g} | {row['selected_features']} ({row['true_selected']}) | {row['working_set']} |")


HEADER = ("| device | spots | penalties | dtype | converged | iterations | solve s | fit wall s | GPU peak GiB | RSS GiB | "
          "objective | selected (true) | WS |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--levels", nargs="+", default=["medium"], choices=list(LEVELS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per fit before it is stopped")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--level", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device here: nothing to measure (use --device cpu for a dry run)")
            return
    OUT.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    for n in args.sizes:
        for level in args.levels:
            for dtype in args.dtypes:
                cmd = [sys.executable, __file__, "--one", "--n", str(n), "--level", level, "--dtype", dtype, "--device", args.device]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=os.environ)
                except subprocess.TimeoutExpired:
                    print(f"| {args.device} | {n:,} | {level} | {dtype} | stopped after {args.timeout:.0f} s |", flush=True)
                    continue
                if proc.returncode != 0:
                    print(f"| {args.device} | {n:,} | {level} | {dtype} | failed: {proc.stderr.strip().splitlines()[-1:]} |", flush=True)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                with (OUT / "gpu.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(line(row), flush=True)


if __name__ == "__main__":
    main()
