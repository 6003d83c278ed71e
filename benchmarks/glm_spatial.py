"""Spatial count-family S3R: the solver on a range of problems, one fit per fresh process (session 32: the primal–dual
solver with the data fit's conjugate against the Condat–Vũ solver with its gradient, the code before it).

    python benchmarks/glm_spatial.py grid [--src SRC ...] [--sizes 3000] [--families poisson negative_binomial]
    python benchmarks/glm_spatial.py one --src SRC --n 3000 --family poisson --level medium

Data: a hexagonal Visium-like lattice, 10 correlated unit-scale features, three of them with piecewise-constant effects
(±0.5 on the link scale) in four domains, a log-library-size offset (library sizes 500–5,000), counts with mean ~5 at a
typical spot (poisson, or negative binomial θ = 2). Penalties relative to the problem's natural scales (weak λ 1e-3,
α = β 1e-3; medium 1e-2, 1e-2; strong 1e-1, 1e-1), an intercept, θ fixed at the truth, tol 1e-5, max 20,000 iterations,
float64, one thread. ``--src`` runs the fit against another checkout's ``src`` (old code side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LEVELS = {"weak": (1e-3, 1e-3), "medium": (1e-2, 1e-2), "strong": (1e-1, 1e-1)}


def data(n: int, family: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    ii, jj = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    coords = np.c_[jj.ravel() + 0.5 * (ii.ravel() % 2), ii.ravel() * np.sqrt(3) / 2][:n]
    mix = rng.normal(size=(10, 10)) * 0.4 + np.eye(10)
    X = rng.normal(size=(n, 10)) @ mix
    X /= X.std(0)
    u, v = coords[:, 0] / coords[:, 0].max(), coords[:, 1] / coords[:, 1].max()
    domain = (u > 0.5).astype(int) + 2 * (v > 0.5).astype(int)
    W = np.zeros((n, 10))
    W[:, 0] = np.array([0.5, -0.5, 0.0, 0.5])[domain]
    W[:, 1] = np.array([0.0, 0.5, 0.5, -0.5])[domain]
    W[:, 2] = 0.3
    off = np.log(rng.uniform(500, 5000, n))
    mu = np.exp(np.log(5.0) - np.log(1500.0) + (X * W).sum(1) + off)
    y = rng.poisson(mu) if family == "poisson" else rng.negative_binomial(2.0, 2.0 / (2.0 + mu))
    return X, y.astype(float), coords, off


def one(args) -> dict:
    import torch

    torch.set_num_threads(1)
    from s3r import S3R
    from s3r.problem import assemble

    X, y, coords, off = data(args.n, args.family)
    model = {"family": args.family} | ({"theta": 2.0} if args.family == "negative_binomial" else {})
    sc = assemble(X, y, coords, model=model, offset=off).natural_scales()
    lam, ab = LEVELS[args.level]
    m = S3R("tv", lam * sc["lambda_smooth"], ab * sc["alpha"], ab * sc["beta"], device="cpu", dtype="float64", tol=1e-5,
            max_iter=20_000, family=args.family, theta=2.0 if args.family == "negative_binomial" else None)
    t = time.perf_counter()
    m.fit(X, y, coords, offset=off)
    rep = m.report_
    return {"src": args.src, "n": args.n, "family": args.family, "level": args.level, "converged": bool(rep["converged"]),
            "iterations": int(rep["iterations"]), "seconds": round(time.perf_counter() - t, 2), "objective": float(rep["objective"]),
            "selected": int((np.abs(m.coef_).max(0) > 0).sum()), "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("one")
    o.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    o.add_argument("--n", type=int, default=3000)
    o.add_argument("--family", default="poisson")
    o.add_argument("--level", default="medium", choices=list(LEVELS))
    g = sub.add_parser("grid")
    g.add_argument("--src", nargs="+", default=[str(Path(__file__).resolve().parents[1] / "src")])
    g.add_argument("--sizes", nargs="+", type=int, default=[3000])
    g.add_argument("--families", nargs="+", default=["poisson", "negative_binomial"])
    g.add_argument("--levels", nargs="+", default=list(LEVELS))
    g.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "glm_spatial.jsonl"))
    args = ap.parse_args()
    if args.cmd == "one":
        sys.path.insert(0, args.src)
        print(json.dumps(one(args)))
        return
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        for family in args.families:
            for level in args.levels:
                for src in args.src:
                    cmd = [sys.executable, __file__, "one", "--src", src, "--n", str(n), "--family", family, "--level", level]
                    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=src)
                    row = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout.strip().splitlines()[-1]
                    print(row, flush=True)
                    with open(args.out, "a") as fh:
                        fh.write(row + "\n")


if __name__ == "__main__":
    main()
