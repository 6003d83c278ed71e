"""Deconvolution benchmark: time, peak memory and accuracy against truth, with and without the spatial term.

Each configuration runs in a fresh subprocess so that peak RSS belongs to that fit alone. Sizes:

- ``777``: 777 spots subsampled from the DLPFC 151507 geometry (the earlier implementation's example size);
- ``4226``: the whole DLPFC 151507 section (the Target: under 10 s on 2 CPU cores);
- ``25000``, ``50000``, ``100000``: uniform spots in the unit square (no real section is that large), to show
  time and memory against size (Target: 100,000 spots under 3 minutes, memory linear in spots).

Every fit is 19 cell types × 3 components with the package defaults unless flags say otherwise. Seconds are
wall-clock for ``Deconvolution.fit`` (graph, initialisation and all steps; simulation excluded), plus CPU
seconds of the process, since a shared machine inflates wall time.

    python benchmarks/deconv_bench.py                      # 777, 4226 and 100000, λ = 10 and λ = 0
    python benchmarks/deconv_bench.py --sizes 25000 50000 100000 --no-baseline --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

GEOMETRY_SIZES = {777: "dlpfc_151507", 4226: "dlpfc_151507"}


def run_one(size: int, lam: float, threads: int, seed: int, dtype: str) -> dict:
    """One fit in this process; prints a JSON line."""
    import torch

    torch.set_num_threads(threads)
    from s3r.deconv import (
        Deconvolution,
        argmax_ari,
        mean_jensen_shannon,
        neighbour_agreement,
        proportions_rmse,
        simulate_deconvolution,
    )

    geometry = GEOMETRY_SIZES.get(size, "uniform")
    n_spots = None if (geometry != "uniform" and size == 4226) else size
    sim = simulate_deconvolution(geometry, n_spots=n_spots, n_cell_types=19, n_components=3, seed=seed)
    model = Deconvolution(3, lambda_smooth=lam, seed=seed, dtype=dtype)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(sim.scores, sim.coords)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = model.report_
    return {
        "spots": int(sim.scores.shape[0]),
        "geometry": geometry,
        "lambda": lam,
        "threads": threads,
        "dtype": dtype,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "iterations": report["iterations"],
        "converged": report["converged"],
        "x_iterations": sum(step["x_iterations"] for step in report["steps"]),
        "w_steps": sum(step["w_step"] for step in report["steps"]),
        "weight_changes": sum(step["weights_changed"] for step in report["steps"]),
        "edges": report["n_edges"],
        "rmse": round(proportions_rmse(model.proportions_, sim.proportions), 4),
        "jsd": round(mean_jensen_shannon(model.proportions_, sim.proportions), 4),
        "ari": round(argmax_ari(model.mixture_, sim.regions), 3),
        "neighbour_agreement": round(neighbour_agreement(model.mixture_.argmax(axis=1), model.graph_.edges), 3),
        "objective": report["objective"],
        "device": report["device"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[777, 4226, 100_000])
    parser.add_argument("--lambda", dest="lam", type=float, default=10.0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the λ = 0 comparison fits")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the Target machine has 2 cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--out", default="benchmarks/out/deconv_bench.json")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "LAMBDA"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        result = run_one(int(args.one[0]), float(args.one[1]), args.threads, args.seed, args.dtype)
        print(json.dumps(result))
        return 0

    rows = []
    for size in args.sizes:
        for lam in [args.lam] + ([] if args.no_baseline else [0.0]):
            command = [sys.executable, __file__, "--one", str(size), str(lam), "--threads", str(args.threads),
                       "--seed", str(args.seed), "--dtype", args.dtype]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{row['spots']:>7} spots λ={row['lambda']:<4g} {row['seconds']:>7.1f} s (cpu {row['cpu_seconds']:.1f}) "
                f"{row['peak_rss_mb']:>7.0f} MB  it {row['iterations']:>3} conv {row['converged']!s:5} "
                f"RMSE {row['rmse']:.4f} JSD {row['jsd']:.4f} ARI {row['ari']:.3f}",
                flush=True,
            )
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
