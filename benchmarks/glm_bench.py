"""GLM benchmarks (issue 7): multi-response elastic net vs a per-gene scikit-learn loop; spatial Poisson S3R.

    python benchmarks/glm_bench.py --out benchmarks/out/glm_bench.json [--sklearn-genes 100] [--device cpu]

Part 1: 10,000 cells × 2,000 genes, 50 perturbations + 10 covariates, elastic net (l1_ratio 0.5) over a 20-value
path per gene (λ_max → 1e-3 λ_max). s3r fits all genes in one batched program; scikit-learn's ElasticNet is
looped over genes with warm starts along the same per-gene λ values. Covariates are penalised here (penalty
factor 1) because scikit-learn cannot leave them out; the natural s3r run (factor 0) is timed too. The
scikit-learn loop runs on ``--sklearn-genes`` genes and is extrapolated linearly to 2,000 (labelled so).
Objectives of both solutions are evaluated with one formula on the same genes ("equal objective").
Part 2: Poisson GLM path on a subset of genes (counts, log-library offset). Part 3: spatial Poisson S3R (tv)
at 10,000 spots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def simulate(n=10_000, genes=2_000, k=50, seed=0):
    rng = np.random.default_rng(seed)
    pert = rng.integers(0, k + 1, n)  # 0 = control
    D = np.zeros((n, k))
    D[pert > 0, pert[pert > 0] - 1] = 1
    batch = rng.integers(0, 5, n)
    Bh = np.eye(5)[batch][:, 1:]  # 4 batch one-hots
    C = np.c_[Bh, rng.uniform(1, 8, n), rng.normal(8, 0.4, n), rng.normal(0, 1, (n, 2)), rng.normal(0, 1, (n, 2))]  # 10 covariates
    W = rng.normal(0, 0.5, (k, genes)) * (rng.random((k, genes)) < 0.05)
    M = rng.normal(0, 0.2, (C.shape[1], genes))
    base = rng.normal(0, 1, genes)
    eta = D @ W + (C - C.mean(0)) @ M + base
    Y = eta + rng.normal(0, 1, (n, genes))
    return np.c_[D, C], Y, eta, W


def objective(X, y, coef, icpt, lam, l1_ratio):
    r = y - X @ coef - icpt
    return 0.5 * np.mean(r * r) + lam * (l1_ratio * np.abs(coef).sum() + 0.5 * (1 - l1_ratio) * (coef * coef).sum())


def part_enet(args, out):
    from sklearn.linear_model import ElasticNet

    from s3r.glm import GLMNet

    X, Y, eta, W = simulate(seed=args.seed)
    n, p = X.shape
    G = Y.shape[1]
    l1 = 0.5
    res = {"n_cells": n, "n_genes": G, "n_features": p, "n_alphas": 20, "l1_ratio": l1}
    t = time.perf_counter()
    ours = GLMNet("gaussian", l1_ratio=l1, n_alphas=20, standardize=False, tol=args.tol, device=args.device).fit(X, Y)
    res["s3r_seconds"] = time.perf_counter() - t
    res["s3r_report"] = ours.report_
    pf = np.r_[np.ones(50), np.zeros(10)]
    t = time.perf_counter()
    GLMNet("gaussian", l1_ratio=l1, n_alphas=20, standardize=False, penalty_factor=pf, tol=args.tol, device=args.device).fit(X, Y)
    res["s3r_seconds_unpenalised_covariates"] = time.perf_counter() - t

    rng = np.random.default_rng(1)
    sub = np.sort(rng.choice(G, args.sklearn_genes, replace=False))
    for variant, kw in (("sklearn", {}), ("sklearn_precompute", {"precompute": True})):
        coefs = np.zeros((20, len(sub), p))
        icpts = np.zeros((20, len(sub)))
        t = time.perf_counter()
        for jj, g in enumerate(sub):
            m = ElasticNet(l1_ratio=l1, warm_start=True, max_iter=10_000, **kw)
            for k in range(20):
                m.set_params(alpha=float(ours.alphas_[k, g]))
                m.fit(X, Y[:, g])
                coefs[k, jj], icpts[k, jj] = m.coef_, m.intercept_
        sec = time.perf_counter() - t
        res[f"{variant}_seconds_measured"] = sec
        res[f"{variant}_genes_measured"] = len(sub)
        res[f"{variant}_seconds_extrapolated_to_all_genes"] = sec * G / len(sub)
        rel = []
        for jj, g in enumerate(sub):
            for k in range(20):
                lam = ours.alphas_[k, g]
                a = objective(X, Y[:, g], ours.coef_path_[k, g], ours.intercept_path_[k, g], lam, l1)
                b = objective(X, Y[:, g], coefs[k, jj], icpts[k, jj], lam, l1)
                rel.append((a - b) / abs(b))
        rel = np.array(rel)
        res[f"{variant}_objective_rel_diff"] = {"s3r_minus_sklearn_median": float(np.median(rel)), "max": float(rel.max()), "min": float(rel.min()),
                                                "fraction_s3r_lower_or_equal_1e-9": float(np.mean(rel <= 1e-9))}
        res[f"speedup_vs_{variant}"] = res[f"{variant}_seconds_extrapolated_to_all_genes"] / res["s3r_seconds"]
    out["elastic_net"] = res
    return X, eta


def part_poisson(args, out, X, eta):
    from s3r.glm import GLMNet

    rng = np.random.default_rng(2)
    genes = np.arange(args.poisson_genes)
    lib = rng.lognormal(np.log(2000), 0.3, X.shape[0])
    mu = np.exp(0.3 * (eta[:, genes] - eta[:, genes].mean(0)) - 2.0) * lib[:, None] / 1000
    Yc = rng.poisson(mu).astype(float)
    pf = np.r_[np.ones(50), np.zeros(10)]
    t = time.perf_counter()
    m = GLMNet("poisson", l1_ratio=0.5, n_alphas=20, standardize=False, penalty_factor=pf, device=args.device).fit(X, Yc, offset=np.log(lib / 1000))
    out["poisson_path"] = {"n_cells": X.shape[0], "n_genes": len(genes), "n_features": X.shape[1], "n_alphas": 20, "seconds": time.perf_counter() - t,
                           "report": m.report_, "median_deviance_explained_last": float(np.median(m.deviance_explained_path_[-1]))}


def part_spatial(args, out):
    from s3r.graph import knn_graph
    from s3r.solver import build_operator
    from s3r.solver.glm_batch import solve_glm_batch

    rng = np.random.default_rng(3)
    n, p = args.spots, 5
    coords = rng.uniform(size=(n, 2))
    X = np.c_[np.ones(n), rng.normal(size=(n, p - 1))]
    region = (coords[:, 0] > 0.5).astype(float) + (coords[:, 1] > 0.5)
    Wt = np.zeros((n, p))
    Wt[:, 0] = 1 + 0.5 * region
    Wt[:, 1] = 0.4 * (region == 1)
    off = np.log(rng.lognormal(0, 0.3, n))
    y = rng.poisson(np.exp((X * Wt).sum(1) + off)).astype(float)
    g = knn_graph(coords, k=7)
    K = build_operator("tv", edges=g.edges, edge_weights=g.weights, n_nodes=n, device=args.device if args.device != "auto" else "cpu")
    t = time.perf_counter()
    r = solve_glm_batch(X, y, family="poisson", smooth="tv", operator=K, lambda_smooth=1e-3, alpha=1e-3, beta=1e-4, offset=off,
                        tol=1e-4, max_iter=20_000, device=args.device)
    sec = time.perf_counter() - t
    W = r.W[:, 0, :].cpu().numpy()
    out["spatial_poisson"] = {"n_spots": n, "n_features": p, "n_edges": int(g.n_edges), "seconds": sec, "iterations": int(r.iterations[0]),
                              "converged": bool(r.converged[0]), "tol": 1e-4, "objective": float(r.objective[0]),
                              "coef_rmse": float(np.sqrt(np.mean((W - Wt) ** 2)))}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/out/glm_bench.json")
    ap.add_argument("--sklearn-genes", type=int, default=100)
    ap.add_argument("--poisson-genes", type=int, default=200)
    ap.add_argument("--spots", type=int, default=10_000)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default="enet,poisson,spatial")
    args = ap.parse_args()
    out = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()}, "args": vars(args)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    X = eta = None
    if "enet" in parts:
        X, eta = part_enet(args, out)
        path.write_text(json.dumps(out, indent=2, default=str))
    if "poisson" in parts:
        if X is None:
            X, _, eta, _ = simulate(seed=args.seed)
        part_poisson(args, out, X, eta)
        path.write_text(json.dumps(out, indent=2, default=str))
    if "spatial" in parts:
        part_spatial(args, out)
    out["machine"]["load_avg_end"] = os.getloadavg()
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
