"""Benchmark (issue 11, Deliver 2): iterations and time of solver variants across a grid of problems, side by side.

The problems are ``working_set.py``'s (unit-scale expression design, p = 100, 11 informative features, kNN k = 7,
``tv``, tol 1e-5, working set on by default): sizes × penalty levels (weak / medium / strong). Each variant is a set
of module constants of ``s3r.solver.primal_dual`` / ``s3r.solver.working_set`` (as in ``solver_knobs.py``; ``DTYPE=mixed``
sets the solver's precision; ``ALGO=admm`` runs the restricted solves with the ADMM prototype of ``solver_admm.py``,
``ADMM_<CONST>`` sets its constants); for
every problem the variants run one after the other, each fit in a fresh subprocess under a wall-clock limit, so a
ratio compares runs made at nearly the same load. One thread per fit unless ``--threads``.

    python benchmarks/solver_grid.py --sizes 1000 10000 --levels weak medium strong \\
        --variant old: --variant new:PRECONDITION=1,RESTART=1 [--timeout 600] [--dtype float64]
    python benchmarks/solver_grid.py --table            # markdown of benchmarks/out/solver_grid.jsonl

Rows are appended to ``benchmarks/out/solver_grid.jsonl`` (commit, load before/after, CPU and wall seconds,
iterations, objective, converged, working-set size, peak RSS).
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

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def one(n: int, level: str, settings: list[str], dtype: str, threads: int) -> dict:
    import numpy as np
    import torch

    import s3r.solver.multilevel as mlm
    import s3r.solver.primal_dual as pd
    import s3r.solver.working_set as wsm
    from bench_common import provenance
    from s3r import S3R
    from s3r.graph import knn_graph
    from s3r.simulate import simulate
    from working_set import LEVELS, MAX_ITER, TOL

    for item in settings:
        name, value = item.split("=")
        if name == "ALGO":  # the restricted solves' algorithm: pdhg (default) or admm (solver_admm.py's prototype)
            import s3r.solver.batch as batch_module

            if value == "admm":
                from solver_admm import admm

                batch_module.primal_dual = admm
            continue
        if name == "DTYPE":  # the solver's precision (float32, float64, mixed) under an S3R fit built in float64
            import s3r.estimator as estimator

            solve = estimator.solve_batch
            estimator.solve_batch = lambda *a, _s=solve, _d=value, **k: _s(*a, **{**k, "dtype": _d})
            continue
        if name == "COARSEN":  # solve_batch's coarse-to-fine switch (0 / 1 / auto) under an S3R fit
            import s3r.estimator as estimator

            solve, flag = estimator.solve_batch, {"0": False, "1": True}.get(value, value)
            estimator.solve_batch = lambda *a, _s=solve, _c=flag, **k: _s(*a, **{**k, "coarsen": _c})
            continue
        if name.startswith("ADMM_"):  # a constant of the ADMM prototype
            import solver_admm

            module, name = solver_admm, name.removeprefix("ADMM_")
        else:
            module = wsm if hasattr(wsm, name) else mlm if hasattr(mlm, name) else pd
        if not hasattr(module, name):
            raise SystemExit(f"unknown solver constant {name}")
        setattr(module, name, type(getattr(module, name))(float(value)))
    torch.set_num_threads(threads)
    load0 = os.getloadavg()[0]
    sim = simulate("three_regions", geometry="uniform", n_spots=n, seed=0, design="expression", sigma=0.2)
    graph = knn_graph(sim.coords, k=7)
    model = S3R("tv", **LEVELS[level], k=7, tol=TOL, max_iter=MAX_ITER, dtype=dtype)
    cpu0, t0 = time.process_time(), time.perf_counter()
    model.fit(sim.X, sim.y, sim.coords, spot_graph=graph)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    r, ws = model.report_, model._result.working_set or {}
    return {
        "provenance": provenance(), "n": n, "level": level, "settings": settings, "dtype": dtype, "threads": threads,
        "converged": r["converged"], "iterations": r["iterations"], "fit_wall_s": round(wall, 2), "fit_cpu_s": round(cpu, 2),
        "objective": r["objective"], "primal_residual": r["primal_residual"], "dual_residual": r["dual_residual"],
        "selected": int(np.any(model.coef_ != 0, axis=0).sum()), "ws_size": ws.get("size"), "outer": ws.get("outer_iterations"),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "load_before": load0,
        "load_after": os.getloadavg()[0], "precision": model._result.precision, "multilevel": model._result.multilevel,
    }


def levels(row: dict) -> str:
    """Coarse levels as aggregates:iterations, coarsest first, then the fine level's iterations ('–' without)."""
    ml = row.get("multilevel")
    if not ml:
        return "–"
    return " → ".join(f"{lv['aggregates']}:{max(lv['iterations'])}" for lv in ml["levels"]) + f" → fine:{max(ml['fine_iterations'])}"


def line(row: dict) -> str:
    if row.get("timed_out"):
        return (f"| {row['n']:,} | {row['level']} | {row['variant']} | timeout {row['timeout_s']} s | – | – | – | – | – | – | – | "
                f"{row['load_before']:.1f} |")
    return (f"| {row['n']:,} | {row['level']} | {row['variant']} | {'yes' if row['converged'] else 'NO'} | {row['iterations']} | "
            f"{row['fit_cpu_s']:.1f} | {row['fit_wall_s']:.1f} | {row['objective']:.8g} | {row['ws_size']} | "
            f"{row.get('peak_rss_gib', float('nan')):.2f} | {levels(row)} | {row['load_before']:.1f}–{row['load_after']:.1f} |")


HEADER = ("| spots | penalties | variant | converged | iterations | fit CPU s | fit wall s | objective | WS size | peak RSS GiB | "
          "levels (aggregates:iterations) | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000])
    parser.add_argument("--levels", nargs="+", default=["weak", "medium", "strong"])
    parser.add_argument("--variant", action="append", default=[], help="NAME:CONST=V,CONST=V (empty settings: the defaults)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--one", nargs=3, metavar=("N", "LEVEL", "SETTINGS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, level, settings = args.one
        print(json.dumps(one(int(n), level, [s for s in settings.split(",") if s], args.dtype, args.threads)))
        return
    path = OUT / "solver_grid.jsonl"
    if args.table:
        print(HEADER)
        for raw in path.read_text().splitlines():
            print(line(json.loads(raw)))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    variants = [v.split(":", 1) for v in (args.variant or ["current:"])]
    print(HEADER, flush=True)
    for n in args.sizes:
        for level in args.levels:
            for name, settings in variants:
                cmd = [sys.executable, __file__, "--one", str(n), level, settings, "--dtype", args.dtype, "--threads", str(args.threads)]
                load0 = os.getloadavg()[0]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=HERE)
                except subprocess.TimeoutExpired:
                    row = {"n": n, "level": level, "variant": name, "settings": settings, "timed_out": True,
                           "timeout_s": args.timeout, "load_before": load0}
                else:
                    if proc.returncode != 0:
                        print(f"n={n} {level} {name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr, flush=True)
                        continue
                    row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "variant": name}
                with path.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(line(row), flush=True)


if __name__ == "__main__":
    main()
