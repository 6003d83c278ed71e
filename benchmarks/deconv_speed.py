"""Proportions-mode speed and memory: simulated counts, 20 cell types × 300 genes, up to 100,000 spots.

One fit per process (peak RSS is its own), torch limited to ``--threads``. Counts from
s3r.deconv.simulate_counts: 8 vertical bands of constant proportions (one Dirichlet draw each), depth 1,000
UMIs per spot varying 3-fold, gamma(0.4) gene profiles, cell types of 0.5–2× RNA content, and, as on a real
section against a reference from another sample, per-gene platform effects (sd of log γ ``--platform-sd``,
0.3) and gamma–Poisson overdispersion (``--theta``, 20: extra-Poisson variance ≈ 0.17× the Poisson variance,
the DLPFC section's is 0.14×). Reports wall and CPU
seconds of ``CellTypeProportions.fit`` (graph, platform effects, λ choice when 'auto', final fit) and the
machine's load average, since a shared machine inflates wall time.

    python benchmarks/deconv_speed.py --spots 100000 --lambda 0.2 --dtype float32
    python benchmarks/deconv_speed.py --spots 100000 --lambda auto --dtype float32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spots", type=int, default=100_000)
    parser.add_argument("--types", type=int, default=20)
    parser.add_argument("--genes", type=int, default=300)
    parser.add_argument("--lambda", dest="lam", default="0.2")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--family", default="auto")
    parser.add_argument("--max-iter", type=int, default=3000, help="V-step iteration cap (a bounded run times iterations)")
    parser.add_argument("--max-outer", type=int, default=8, help="V-step/w-step rounds")
    parser.add_argument("--options", default=None, help='more model options as JSON, e.g. \'{"cv_max_spots": 5000}\'')
    parser.add_argument("--platform-sd", type=float, default=0.3)
    parser.add_argument("--theta", type=float, default=20.0, help="NB overdispersion of the counts (0: Poisson)")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from s3r.deconv import CellTypeProportions, simulate_counts

    sim = simulate_counts(n_spots=args.spots, n_types=args.types, n_genes=args.genes, n_regions=8, depth=1000,
                          platform_sd=args.platform_sd, theta=args.theta or None, seed=0)
    import s3r.deconv.proportions as proportions_module

    solve = proportions_module.solve_proportions

    def logged_solve(term, start, incidence, costs, **kw):  # each V-step's iterations and seconds, on stderr
        began, cpu_began = time.perf_counter(), time.process_time()
        result = solve(term, start, incidence, costs, **kw)
        print(f"[speed] V-step: {start.shape[1]} spots, {incidence.n_edges} edges, tol {kw.get('tol'):g}: "
              f"{result.iterations} iterations, {time.perf_counter() - began:.1f} s ({time.process_time() - cpu_began:.1f} CPU s)",
              file=sys.stderr, flush=True)
        return result

    proportions_module.solve_proportions = logged_solve
    lam = args.lam if args.lam == "auto" else float(args.lam)
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    model = CellTypeProportions(lambda_smooth=lam, family=args.family, dtype=args.dtype, verbose=True,
                                max_iter=args.max_iter, max_outer=args.max_outer,
                                **(json.loads(args.options) if args.options else {})).fit(sim.counts, sim.reference, sim.coords)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    row = {
        "spots": args.spots, "types": args.types, "genes": args.genes, "lambda": model.lambda_, "lambda_given": args.lam,
        "dtype": args.dtype, "threads": args.threads, "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rmse": round(float(np.sqrt(np.mean((model.proportions_ - sim.proportions) ** 2))), 4),
        "family": model.report_["family"], "platform_sd": args.platform_sd, "theta": args.theta,
        "options": args.options, "cv_spots": model.report_["cv_spots"],
        "evidence": {f"{k:g}": round(float(v), 5) for k, v in model.summary_of_choice().set_index("lambda")["mean"].items()} if model.cv_ is not None else None,
        "iterations_final": model.report_["certificate"]["iterations"], "outer": model.report_["outer_iterations"], "certificate": model.certificate_,
        "load_average_before": load_before, "load_average_after": os.getloadavg(), "cpus": os.cpu_count(),
    }
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
