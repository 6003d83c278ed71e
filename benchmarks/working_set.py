"""Benchmark (issue 11): the gaussian solver with and without working sets over features, side by side.

Data: ``s3r.simulate.simulate("three_regions", geometry="uniform", n_spots=n, seed=0, design="expression",
sigma=0.2)`` — unit-scale log-expression features (p = 100), the signal ⟨x_i, w_i⟩ with sd 1, σ = 0.2 (signal
R² 0.96), 11 informative features over three regions; kNN k = 7, ``tv``, the default (standard, scale-free)
parameterisation, tolerance 1e-5, float64. Penalties (user scale, the same meaning at every n):

    weak   λ 1.5, α 0.08, β 0.08
    medium λ 4.6, α 0.24, β 0.24   (about 0.1, 0.01, 0.1 of the natural scales: 5 of 100 features selected)
    strong λ 15,  α 0.8,  β 0.8

Every fit runs in a fresh subprocess so ``ru_maxrss`` is that fit's peak memory; each row records the load
average before and after, the commit and the working-set figures (final size, outer solves, check passed).

    python benchmarks/working_set.py grid [--sizes 10000] [--levels weak medium strong] [--modes off on]
    python benchmarks/working_set.py one --n 100000 --level medium --mode on     # one fit, JSON on stdout
    python benchmarks/working_set.py one --n 100000 --p 1000 --dtype mixed       # the 1,000-feature case
    python benchmarks/working_set.py table                                       # markdown of the jsonl

Results are appended to ``benchmarks/out/working_set.jsonl``.
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
LEVELS = {
    "weak": {"lambda_smooth": 1.5, "alpha": 0.08, "beta": 0.08},
    "medium": {"lambda_smooth": 4.6, "alpha": 0.24, "beta": 0.24},
    "strong": {"lambda_smooth": 15.0, "alpha": 0.8, "beta": 0.8},
}
TOL = 1e-5
MAX_ITER = 20_000


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def one(args) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import s3r.solver.fused_cpu

    s3r.solver.fused_cpu.ENABLED = not getattr(args, "torch_step", False)
    import s3r.estimator as estimator
    from s3r import S3R
    from s3r.graph import knn_graph
    from s3r.simulate import simulate

    load_before = os.getloadavg()
    sim = simulate("three_regions", geometry="uniform", n_spots=args.n, n_features=args.p, seed=0, design="expression", sigma=0.2)
    truth = set(sum(sim.informative.values(), []))
    X, y, coords = sim.X, sim.y, sim.coords
    del sim  # the true coefficient maps (n × p float64: 0.8 GB at 10⁵ × 1,000) are no input of the fit
    graph = knn_graph(coords, k=7)
    rss_before = rss_gib()
    solve = estimator.solve_batch
    mode = {"on": True, "off": False, "auto": "auto"}[args.mode]
    coarsen = {"on": True, "off": False, "auto": "auto"}[args.coarsen]
    estimator.solve_batch = lambda *a, **k: solve(*a, **{**k, "working_set": mode, "coarsen": coarsen})  # the switches under test
    params = LEVELS[args.level]
    progress = OUT / f"working_set_progress_n{args.n}_{args.level}_{args.mode}_c{args.coarsen}.txt"
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text("iteration working_set objective primal dual wall_s cpu_s\n")

    def log(entry):  # every 100 iterations, so a long fit shows where it is
        with progress.open("a") as fh:
            fh.write(f"{entry['iteration']} {entry.get('working_set', '-')} {entry['objective'][0]:.10g} {entry['primal_residual'][0]:.3e} "
                     f"{entry['dual_residual'][0]:.3e} {time.perf_counter() - t0:.1f} {time.process_time() - cpu0:.1f}\n")

    model = S3R("tv", **params, k=7, dtype=args.dtype, tol=TOL, max_iter=MAX_ITER, callback=log)
    cpu0, t0 = time.process_time(), time.perf_counter()
    model.fit(X, y, coords, spot_graph=graph)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    r = model.report_
    selected = set(np.flatnonzero(np.any(model.coef_ != 0, axis=0)).tolist())
    r2 = float(1 - np.mean((y - model.predict(X)) ** 2) / np.var(y))
    ws = model._result.working_set
    return {
        "provenance": provenance(), "n": args.n, "p": X.shape[1], "n_edges": graph.n_edges, "level": args.level,
        "params": params, "mode": args.mode, "dtype": args.dtype, "threads": args.threads,
        "converged": r["converged"], "iterations": r["iterations"], "solve_seconds": r["solve_seconds"], "fit_wall_seconds": wall,
        "fit_cpu_seconds": cpu, "step": "torch" if getattr(args, "torch_step", False) else "fused where it applies", "objective": r["objective"], "primal_residual": r["primal_residual"], "dual_residual": r["dual_residual"],
        "selected_features": len(selected), "true_selected": len(selected & truth), "true_features": len(truth), "r2_in_sample": r2,
        "working_set": ws, "multilevel": model._result.multilevel, "precision": r.get("precision"), "coarsen": args.coarsen, "rss_before_fit_gib": rss_before, "peak_rss_gib": rss_gib(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }


def grid(args) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "working_set.jsonl"
    for n in args.sizes:
        for level in args.levels:
            for mode in args.modes:
                cmd = [sys.executable, __file__, "one", "--n", str(n), "--level", level, "--mode", mode, "--dtype", args.dtype,
                       "--threads", str(args.threads)] + (["--torch-step"] if args.torch_step else [])
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"n={n} {level} {mode}: failed\n{proc.stderr[-2000:]}", file=sys.stderr, flush=True)
                    continue
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                with path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(line(row), flush=True)


def line(row: dict) -> str:
    ws = row.get("working_set") or {}
    la, lb = row["loadavg_before"][0], row["loadavg_after"][0]
    return (f"| {row['n']:,} | {row['level']} | {row['mode']} | {'yes' if row['converged'] else 'NO'} | {row['iterations']} | "
            f"{row['solve_seconds']:.1f} | {row['fit_cpu_seconds']:.1f} | {row['peak_rss_gib']:.2f} | {row['objective']:.8g} | "
            f"{row['selected_features']} ({row['true_selected']}/{row['true_features']}) | "
            f"{ws.get('size', '–')} / {ws.get('outer_iterations', '–')} / {ws.get('check_passed', '–')} | {la:.1f}–{lb:.1f} |")


def table(args) -> None:
    print("| spots | penalties | working set | converged | iterations | solve s | fit CPU s | peak RSS GiB | objective | "
          "selected (true) | WS size / outer / check | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for raw in (OUT / "working_set.jsonl").read_text().splitlines():
        print(line(json.loads(raw)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid")
    g.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    g.add_argument("--levels", nargs="+", default=list(LEVELS))
    g.add_argument("--modes", nargs="+", default=["off", "on"])
    o = sub.add_parser("one")
    o.add_argument("--n", type=int, required=True)
    o.add_argument("--p", type=int, default=None, help="features (default: the simulation's 100; 1,000: the issue's wide case, 11 informative)")
    o.add_argument("--level", default="medium", choices=list(LEVELS))
    o.add_argument("--mode", default="on", choices=["on", "off", "auto"])
    o.add_argument("--coarsen", default="auto", choices=["on", "off", "auto"], help="solve_batch's coarse-to-fine switch")
    for p in (g, o):
        p.add_argument("--dtype", default="float64")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--torch-step", action="store_true", help="the torch PDHG step, not the compiled CPU loop (one thread)")
    sub.add_parser("table")
    args = parser.parse_args()
    if args.cmd == "one":
        print(json.dumps(one(args)))
    elif args.cmd == "grid":
        grid(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
