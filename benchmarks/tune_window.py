"""Benchmark (issues 11, 17): tuning a large section on a window of it (``tune.max_spots``, s3r.tune.window).

``transfer``: does the window's choice serve the whole section? On 10,000-spot simulations (unit-scale
expression design, 100 features, uniform geometry) the same defaults tune once on every spot and once on a
2,500-spot window (four discs, and one disc for comparison); each choice is fitted on every spot and scored
against the truth (k-means ARI of the map, relative error of W, R² of the fitted signal, features selected).

    python benchmarks/tune_window.py transfer --cells five_regions:1 three_regions:1 four_quadrants:2 [--n 10000] [--window 2500]

``large``: issue 11's target — ``s3r tune`` with its defaults on 100,000 spots × 100 features (working_set.py's
problem: three_regions, σ 0.2, 11 informative features), then ``s3r fit --params``, both through the command line
under ``/usr/bin/time -v`` (wall, CPU, peak RSS), and the fitted map scored against the truth.

    python benchmarks/tune_window.py large [--n 100000]

Records are appended to ``benchmarks/out/tune_window.jsonl`` (one JSON line each).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_common import provenance
from realistic_grid import estimator_kwargs, kmeans_ari

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "tune_window.jsonl"


def scores(sim, W: np.ndarray, fitted: np.ndarray) -> dict:
    truth = sim.intercept + sim.signal
    support = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(W != 0, axis=0)).tolist())
    return {"ari": kmeans_ari(W, sim.regions),
            "rel_rmse_W": float(np.sqrt(np.mean((W - sim.W) ** 2)) / np.sqrt(np.mean(sim.W**2))),
            "r2_vs_truth": float(1 - np.sum((fitted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2)),
            "selected": len(selected), "true_selected": len(selected & support), "true": len(support)}


def record(row: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps({**row, **provenance()}) + "\n")
    print(json.dumps(row), flush=True)


def kmeans_discs(coords, size: int, tiles: int) -> np.ndarray:
    """The alternative measured against the library's one disc: ``tiles`` equal-radius discs around k-means centres
    of the spots, holding ``size`` spots together (the spots ranked by their distance to the nearest centre)."""
    from scipy.spatial import cKDTree
    from sklearn.cluster import KMeans

    xy = np.asarray(coords, dtype=np.float64)
    centres = KMeans(n_clusters=tiles, n_init=4, random_state=0).fit(xy).cluster_centers_
    distance, _ = cKDTree(centres).query(xy)
    return np.sort(np.argsort(distance, kind="stable")[:size])


def transfer_one(layout: str, sigma: float, n: int, window: int, tiles: int) -> dict:
    from s3r import S3R, tune
    from s3r.io import RegressionData
    from s3r.simulate import simulate

    if tiles > 1:  # the search's window replaced by the k-means discs (the library has one disc only)
        import s3r.tune.search as search

        search.window_index = lambda coords, config: (None if len(coords) <= config["max_spots"]
                                                      else kmeans_discs(coords, config["max_spots"], tiles))
    sim = simulate(layout, geometry="uniform", n_spots=n, n_features=100, seed=0, design="expression", sigma=sigma)
    data = RegressionData(sim.X, sim.y, sim.coords, [f"s{i}" for i in range(n)], sim.feature_names, "y")
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as out:
        best = tune.run_search(data, {"max_spots": window or None}, out)
        best = {**best, **json.loads((Path(out) / "best_params.json").read_text())}
    tune_wall, tune_cpu = time.perf_counter() - wall, time.process_time() - cpu
    kwargs, _ = estimator_kwargs(best)
    wall = time.perf_counter()
    model = S3R(**kwargs).fit(sim.X, sim.y, sim.coords)
    return {"kind": "transfer", "layout": layout, "sigma": sigma, "n": n, "window": window or n, "tiles": tiles if window else None,
            "params": {k: best[k] for k in ("lambda_smooth", "alpha", "beta")}, "trial": best["trial"],
            "effect_found": best["effect_found"], **scores(sim, np.asarray(model.coef_), np.asarray(model.predict(sim.X))),
            "tune_wall_s": tune_wall, "tune_cpu_s": tune_cpu, "fit_wall_s": time.perf_counter() - wall,
            "load_before": load, "load_after": os.getloadavg()[0]}


def cmd_transfer(args) -> None:
    for cell in args.cells:
        layout, sigma = cell.split(":")
        for window, tiles in ((0, 0), (args.window, 4), (args.window, 1)):
            # each in a fresh process, so one run's allocations and threads do not touch the next
            code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import json, tune_window as t; "
                    f"t.record(t.transfer_one({layout!r}, {float(sigma)}, {args.n}, {window}, {tiles}))")
            subprocess.run([sys.executable, "-c", code], check=True)


def timed(command: list[str], env: dict) -> dict:
    """Run under /usr/bin/time -v: wall, CPU and peak RSS of the whole command."""
    proc = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    def field(name):
        return re.search(rf"{re.escape(name)}: (.+)", proc.stderr).group(1).strip()
    h, m, s = (["0"] + field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":"))[-3:]
    return {"wall_s": int(h) * 3600 + int(m) * 60 + float(s), "cpu_s": float(field("User time (seconds)")) + float(field("System time (seconds)")),
            "peak_rss_gib": int(field("Maximum resident set size (kbytes)")) / 2**20, "stderr_tail": proc.stderr.split("\tCommand being timed")[0][-1500:]}


def cmd_large(args) -> None:
    import anndata

    from s3r.simulate import simulate

    sim = simulate("three_regions", geometry="uniform", n_spots=args.n, n_features=100, seed=0, design="expression", sigma=0.2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        h5ad = Path(tmp) / "section.h5ad"
        adata = anndata.AnnData(sim.y[:, None].astype(np.float32), obsm={"spatial": sim.coords, "features": sim.X.astype(np.float32)})
        adata.var_names = ["y"]
        adata.obs_names = [f"s{i}" for i in range(args.n)]
        adata.write_h5ad(h5ad)
        s3r = [sys.executable, "-m", "s3r"]
        given = ["--h5ad", str(h5ad), "--target", "y", "--features", "obsm:features", "--normalisation", "off"]
        load = os.getloadavg()[0]
        tuned = timed([*s3r, "tune", *given, "--out", f"{tmp}/tune"], env)
        best = json.loads((Path(tmp) / "tune" / "best_params.json").read_text())
        fitted = timed([*s3r, "fit", *given, "--params", f"{tmp}/tune/best_params.json", "--out", f"{tmp}/fit"], env)
        with np.load(Path(tmp) / "fit" / "coefficients.npz") as z:
            W, fitted_values = z["coef"], z["fitted"]
    tuning = best.get("tuning", {})
    record({"kind": "large", "n": args.n, "p": 100, "tune": tuned, "fit": fitted, "total_wall_s": tuned["wall_s"] + fitted["wall_s"],
            "params": best["params"], "window": tuning.get("window"), "trial": tuning.get("trial"), "verdict": tuning.get("verdict"),
            **scores(sim, np.asarray(W, dtype=np.float64), np.asarray(fitted_values, dtype=np.float64)),
            "load_before": load, "load_after": os.getloadavg()[0]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("transfer")
    t.add_argument("--cells", nargs="+", default=["five_regions:1", "three_regions:1", "four_quadrants:2"])
    t.add_argument("--n", type=int, default=10_000)
    t.add_argument("--window", type=int, default=2_500)
    g = sub.add_parser("large")
    g.add_argument("--n", type=int, default=100_000)
    g.add_argument("--scratch", default=None, help="where the h5ad and the outputs go while the run lasts (default: the system's)")
    args = parser.parse_args()
    {"transfer": cmd_transfer, "large": cmd_large}[args.cmd](args)


if __name__ == "__main__":
    main()
