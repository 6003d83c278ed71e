"""Benchmark (c): ARI of coefficient-map clusters over the six layouts × σ ∈ {0.5, 1, 2} at fixed parameters.

Data: ``s3r.simulate.simulate(layout, sigma=σ, seed=0)`` on each layout's own points (design.md §10; 100
features, or 1.5 n for the high-dimensional layouts). With one seed X, the coordinates and the true W are the
same for the three σ, only the noise differs, so each layout is one batched solve (``s3r.solver.solve_batch``):
the three σ with the spatial term and the same three with λ = 0.

Methods (one parameter set for everything, stated in ``PARAMS``):
  - ``s3r_tv``: S3R, smooth = tv on the kNN (k = 7) graph, λ, α, β = PARAMS, y == 0 rows masked (none here),
    tolerance 1e-5 (the default).
  - ``s3r_no_spatial``: the same objective and α, β with λ = 0 (per-spot lasso + group lasso: the spatial term
    removed).
  - ``elastic_net``: an elastic net without spatial terms, per-spot coefficients (the varying-coefficient design
    y_i = ⟨x_i, W_i⟩ as a sparse n × (n·p) regression), sklearn ``ElasticNet(alpha=EN_ALPHA,
    l1_ratio=EN_L1_RATIO)``.
Score: k-means with k = the true number of regions on the rows of the fitted W (sklearn
``KMeans(n_clusters=k, n_init=10, random_state=0)``), ``adjusted_rand_score`` against the true regions; also the
RMSE of W and the support (features with any non-zero coefficient) against the true informative features.

    python benchmarks/ari_fixed.py [--layouts ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

from bench_common import provenance

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
SIGMAS = (0.5, 1.0, 2.0)
PARAMS = {"lambda_smooth": 0.05, "alpha": 0.005, "beta": 0.01}  # picked on five_regions, σ = 1, seed 1 (not the scored seed 0)
K = 7
TOL = 1e-5
MAX_ITER = 20_000
EN_ALPHA, EN_L1_RATIO = 0.01, 0.5




def kmeans_ari(W: np.ndarray, regions: np.ndarray) -> float:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    k = len(np.unique(regions))
    with warnings.catch_warnings():  # identical rows (an all-zero fit) make k-means warn; the ARI is then 0
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(W)
    return float(adjusted_rand_score(regions, labels))


def scores(W: np.ndarray, sim) -> dict:
    true = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(W != 0, axis=0)).tolist())
    return {
        "ari": kmeans_ari(W, sim.regions),
        "rmse_W": float(np.sqrt(np.mean((W - sim.W) ** 2))),
        "selected": len(selected),
        "true_selected": len(selected & true),
        "true_features": len(true),
    }


def elastic_net(sim) -> np.ndarray:
    import scipy.sparse as sp
    from sklearn.linear_model import ElasticNet

    n, p = sim.X.shape
    design = sp.csr_matrix((sim.X.ravel(), np.arange(n * p), np.arange(0, n * p + 1, p)), shape=(n, n * p))
    model = ElasticNet(alpha=EN_ALPHA, l1_ratio=EN_L1_RATIO, fit_intercept=False, max_iter=10_000, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(design, sim.y)
    return model.coef_.reshape(n, p)


def run_layout(layout: str) -> list[dict]:
    from s3r import S3R
    from s3r.simulate import simulate
    from s3r.solver import solve_batch

    prov = provenance()
    sims = [simulate(layout, sigma=s, seed=0) for s in SIGMAS]
    X, coords = sims[0].X, sims[0].coords
    assert all(np.array_equal(s.X, X) and np.array_equal(s.coords, coords) for s in sims)
    Y = np.stack([s.y for s in sims], axis=1)
    Y = np.concatenate([Y, Y], axis=1)  # σ × {spatial, λ = 0}
    B = Y.shape[1]
    lam = np.array([PARAMS["lambda_smooth"]] * len(SIGMAS) + [0.0] * len(SIGMAS))
    operator, graph = S3R("tv", **PARAMS, k=K).build_smoothness(coords)
    res = solve_batch(
        X, Y, smooth="tv", operator=operator, lambda_smooth=lam, alpha=PARAMS["alpha"], beta=PARAMS["beta"],
        free_rows=(Y != 0).astype(np.float64), tol=TOL, max_iter=MAX_ITER, device="cpu", dtype="float64",
    )
    W = res.W.double().cpu().numpy()  # (n, B, p)
    rows = []
    for b in range(B):
        sim = sims[b % len(SIGMAS)]
        method = "s3r_tv" if b < len(SIGMAS) else "s3r_no_spatial"
        rows.append({
            "layout": layout, "sigma": sim.sigma, "method": method, "n": sim.n_spots, "p": sim.n_features,
            "regions": sim.n_regions, "converged": bool(res.converged[b]), "iterations": int(res.iterations[b]),
            "batch_seconds": res.seconds, "objective": float(res.objective[b]), **scores(W[:, b, :], sim),
            "params": {**PARAMS, "lambda_smooth": float(lam[b])}, "provenance": prov,
        })  # fmt: skip
    for sim in sims:
        t0 = time.perf_counter()
        Wen = elastic_net(sim)
        rows.append({
            "layout": layout, "sigma": sim.sigma, "method": "elastic_net", "n": sim.n_spots, "p": sim.n_features,
            "regions": sim.n_regions, "seconds": time.perf_counter() - t0, **scores(Wen, sim),
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    from s3r.simulate import LAYOUTS

    methods = ("s3r_tv", "s3r_no_spatial", "elastic_net")
    lines = ["| layout | n | p | σ | " + " | ".join(f"ARI {m}" for m in methods) + " | s3r_tv selected (true/all true) | s3r_tv RMSE W | converged (it) |",
             "|---|---|---|---|" + "---|" * len(methods) + "---|---|---|"]  # fmt: skip
    by = {(r["layout"], r["sigma"], r["method"]): r for r in rows}
    means = {m: [] for m in methods}
    for layout in LAYOUTS:
        for s in SIGMAS:
            if (layout, s, "s3r_tv") not in by:
                continue
            tv = by[(layout, s, "s3r_tv")]
            cells = []
            for m in methods:
                r = by.get((layout, s, m))
                cells.append(f"{r['ari']:.3f}" if r else "–")
                if r:
                    means[m].append(r["ari"])
            lines.append(
                f"| {layout} | {tv['n']} | {tv['p']} | {s} | " + " | ".join(cells)
                + f" | {tv['selected']} ({tv['true_selected']}/{tv['true_features']}) | {tv['rmse_W']:.2f} | {tv['converged']} ({tv['iterations']}) |"
            )
    lines.append("| **mean** | | | | " + " | ".join(f"**{np.mean(v):.3f}**" if v else "–" for v in means.values()) + " | | | |")
    return "\n".join(lines)


def main() -> None:
    from s3r.simulate import LAYOUTS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="only print the table of benchmarks/out/ari.json")
    args = parser.parse_args()
    out_path = OUT / "ari.json"
    rows = json.loads(out_path.read_text()) if out_path.exists() else []
    if not args.table:
        import torch

        torch.set_num_threads(args.threads)
        OUT.mkdir(parents=True, exist_ok=True)
        for layout in args.layouts:
            t0 = time.perf_counter()
            new = run_layout(layout)
            rows = [r for r in rows if r["layout"] != layout] + new
            out_path.write_text(json.dumps(rows, indent=1))
            tv = [r for r in new if r["method"] == "s3r_tv"]
            print(f"{layout}: ARI s3r_tv {[round(r['ari'], 3) for r in tv]}, it {[r['iterations'] for r in tv]}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    print(table(rows))


if __name__ == "__main__":
    main()
