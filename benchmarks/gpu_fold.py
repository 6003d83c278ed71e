"""GPU benchmark (issue 13): the workflow's ``tune_fold`` work for one chunk of targets, on the CPU and on CUDA.

Issue 13's target (one DLPFC section, 200 targets, tuned, fitted and reported in < 30 min) is 93 % fold solves, and
on the CPU those cost about 1 ms per problem-iteration whatever the batch size (memory bandwidth: session 20 in
benchmarks/README.md). On a GPU the batch is the lever: the workflow's GPU rule solves a chunk's whole round at once.
This script measures that job without the real data (which does not travel to a device machine): a simulated
section of the same size and geometry — the bundled DLPFC 151673 spot layout (3,639 spots), 25 expression-like
features, kNN 7, ``tv``, the default tuning settings — with ``--targets`` targets, of which one in eight carries a
spatially varying effect of the features (signal sd 1, σ 1) and the others are noise around a spatial trend, as
most genes of a real study are. Round 0's ten trials (a Latin hypercube over the default relative box, drawn here
with scipy so optuna need not be installed) are solved on fold 0 exactly as ``tune.evaluate_fold_targets`` does in
the workflow; the script prints wall seconds, problem-iterations and the held-out losses' agreement between
devices (float32 runs may differ in the last digits).

    python benchmarks/gpu_fold.py --targets 67 --devices cuda cpu     # a workflow chunk (200 targets / 3 chunks)
    python benchmarks/gpu_fold.py --targets 4 --devices cpu           # a dry run without a GPU
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def chunk(n_targets: int, seed: int = 0):
    """(RegressionData per target, the trials doc shared by every target)."""
    from scipy.stats import qmc

    from s3r.io.data import RegressionData
    from s3r.simulate import simulate

    base = simulate("five_regions", geometry="dlpfc_151673", design="expression", n_features=25, sigma=1.0, seed=seed)
    rng = np.random.default_rng(seed)
    signal = np.einsum("ij,ij->i", base.X, base.W)
    trend = np.sin(3 * base.coords[:, 0]) + np.cos(2 * base.coords[:, 1])
    names = [f"target{t}" for t in range(n_targets)]
    data = {}
    for t, name in enumerate(names):
        y = 0.5 * trend + rng.normal(size=base.n_spots) + (signal if t % 8 == 0 else 0.0)
        data[name] = RegressionData(X=base.X, y=y, coords=base.coords, spot_ids=[str(i) for i in range(base.n_spots)],
                                    feature_names=[f"f{j}" for j in range(base.n_features)], target_name=name)
    points = 10.0 ** (-4 + 4 * qmc.LatinHypercube(d=3, seed=seed).random(10))  # relative box [1e-4, 1]³, log scale
    trials = {"round": 0, "trials": [{"number": i, "round": 0, "search": dict(zip(("lambda_smooth", "alpha", "beta"), map(float, p)))}
                                     for i, p in enumerate(points)]}
    return data, trials


def run(data: dict, trials: dict, device: str) -> dict:
    import torch

    from s3r import tune
    from s3r.graph import build_graph

    config = tune.resolve_config({"solver": {"device": device}})
    graph = build_graph(next(iter(data.values())).coords, "knn", k=config["model"]["k"])  # one graph, as the workflow's rule
    problems = {name: tune.make_problem(d, config, graph=graph) for name, d in data.items()}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu = time.perf_counter(), time.process_time()
    results, _ = tune.evaluate_fold_targets(problems, config, {name: trials for name in problems}, 0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    trials_out = [t for r in results.values() for t in r["trials"]]
    return {
        "device": device, "wall": wall, "cpu": cpu, "iterations": sum(t["iterations"] for t in trials_out),
        "converged": sum(t["converged"] for t in trials_out), "problems": len(trials_out),
        "losses": np.array([np.nan if t["loss"] is None else t["loss"] for t in trials_out]),
        "gpu_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None,
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=67)
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (the workflow's tune_fold: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices if not d.startswith("cuda") or torch.cuda.is_available()]
    if not devices:
        print("no CUDA device here and no CPU run asked for: nothing to measure")
        return
    data, trials = chunk(args.targets)
    rows = [run(data, trials, device) for device in devices]
    n = next(iter(data.values())).X.shape
    print(f"{n[0]} spots × {n[1]} features, {args.targets} targets × 10 trials, round 0, fold 0 "
          f"({torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}; torch {torch.__version__})")
    for r in rows:
        print(f"{r['device']:>5}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, {r['iterations']} problem-iterations "
              f"({r['converged']} / {r['problems']} converged), {1e3 * r['wall'] / max(r['iterations'], 1):.3f} ms per "
              f"problem-iteration" + (f", GPU peak {r['gpu_peak_gib']:.2f} GiB" if r["gpu_peak_gib"] is not None else ""))
    if len(rows) > 1:
        a, b = rows[0]["losses"], rows[1]["losses"]
        print(f"held-out losses {rows[0]['device']} vs {rows[1]['device']}: max relative difference "
              f"{np.nanmax(np.abs(a - b) / np.abs(b)):.2e}; wall ratio {rows[1]['wall'] / rows[0]['wall']:.1f}×")


if __name__ == "__main__":
    main()
