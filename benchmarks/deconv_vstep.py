"""Side-by-side V-step variants of the proportions mode's Condat–Vũ solver at a fixed λ.

Counts from the generator of ``deconv_speed.py`` (s3r.deconv.simulate_counts: 8 vertical bands, 20 types ×
300 genes, platform effects sd 0.3, gamma–Poisson θ = 20). Every variant runs in a fresh process, one after
the other, with one torch thread; a variant is ``name:KEY=VALUE,...`` setting module constants of
``s3r.deconv.pstep`` (DUAL_START, BALANCE_GAP, FIRST_REESTIMATE) or, as ``proportions.ARG=VALUE``, a
``CellTypeProportions`` argument. Each row: the V-steps' iterations,
CPU seconds of the whole fixed-λ fit and of its V-steps, the final objective (the same problem for every
variant, so objectives must agree to the certificate's tolerance) and the RMSE against the true proportions.

    python benchmarks/deconv_vstep.py --spots 20000 --variant now: \
        --variant before:DUAL_START=cost,BALANCE_GAP=False,FIRST_REESTIMATE=50
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _parse(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(value, value)


def run_one(args, variant: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import s3r.deconv.pstep as pstep
    import s3r.deconv.proportions as proportions_module
    from s3r.deconv import CellTypeProportions, simulate_counts

    name, _, settings = variant.partition(":")
    options = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        if key.startswith("proportions."):
            options[key.split(".", 1)[1]] = _parse(value)
        else:
            if not hasattr(pstep, key):
                raise SystemExit(f"s3r.deconv.pstep has no {key}")
            setattr(pstep, key, _parse(value))
    sim = simulate_counts(n_spots=args.spots, n_types=args.types, n_genes=args.genes, n_regions=8, depth=1000,
                          platform_sd=0.3, theta=20.0, seed=args.seed)
    steps = []
    solve = proportions_module.solve_proportions

    def logged(term, start, incidence, costs, **kw):
        cpu = time.process_time()
        result = solve(term, start, incidence, costs, **kw)
        steps.append({"edges": incidence.n_edges, "iterations": result.iterations, "converged": result.converged,
                      "cpu": round(time.process_time() - cpu, 2)})
        return result

    proportions_module.solve_proportions = logged
    cpu, wall = time.process_time(), time.perf_counter()
    options = {"lambda_smooth": args.lam, "dtype": args.dtype, **options}
    model = CellTypeProportions(**options)
    model.fit(sim.counts, sim.reference, sim.coords)
    spatial = [s for s in steps if s["edges"] > 0]
    return {
        "variant": name, "settings": settings, "spots": args.spots, "dtype": options["dtype"], "lambda": args.lam,
        "v_steps": [s["iterations"] for s in spatial], "v_step_cpu": round(sum(s["cpu"] for s in spatial), 1),
        "per_spot_iterations": [s["iterations"] for s in steps if s["edges"] == 0],
        "fit_cpu": round(time.process_time() - cpu, 1), "fit_wall": round(time.perf_counter() - wall, 1),
        "converged": model.certificate_["converged"], "objective": model.certificate_["objective"],
        "rmse": round(float(np.sqrt(np.mean((model.proportions_ - sim.proportions) ** 2))), 5),
        "outer": model.report_["outer_iterations"], "load": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spots", type=int, default=2000)
    parser.add_argument("--types", type=int, default=20)
    parser.add_argument("--genes", type=int, default=300)
    parser.add_argument("--lambda", dest="lam", type=float, default=0.2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(args, args.one)), flush=True)
        return 0
    base = [sys.executable, __file__, "--spots", str(args.spots), "--types", str(args.types), "--genes",
            str(args.genes), "--lambda", str(args.lam), "--dtype", args.dtype, "--seed", str(args.seed)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for variant in args.variant or ["base:"]:
        load = os.getloadavg()[0]
        try:
            out = subprocess.run(base + ["--one", variant], capture_output=True, text=True, env=env, timeout=args.timeout)
            line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else json.dumps({"variant": variant, "error": out.stderr[-500:]})
        except subprocess.TimeoutExpired:
            line = json.dumps({"variant": variant, "error": f"timeout {args.timeout:g} s"})
        row = json.loads(line)
        row["load_before"] = load
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
