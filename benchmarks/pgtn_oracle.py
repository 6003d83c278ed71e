"""Diagnosis of the realistic grid's p > n cells (issue 17, session 11): fixed-parameter oracle fits and re-ranked trials.

For one grid cell (``realistic_grid.py``'s data: ``simulate(layout, sigma, seed, design="expression")``) and the
tuning's default problem assembly (``s3r.tune.make_problem`` with no configuration), parameter sets given relative
to the data's natural scales (as the default search gives them) are fitted on all spots one by one by the final
fit itself (``S3R`` with the tuning's default model, the estimator's default tolerance 1e-5, as the grid's final
fit), and each map is scored as the grid scores the final fit: k-means ARI on the rows of the coefficients on the
user's scale, features selected against the true ones.

    python benchmarks/pgtn_oracle.py grid LAYOUT SIGMA [--lam ...] [--alpha ...] [--beta ...] --out FILE
        a product grid of relative λ, α, β: what is the best ARI any parameter set gives, and where is it?
    python benchmarks/pgtn_oracle.py trials KEPT_CELL_DIR --out FILE [--cv] [--cv-tol 1e-3] [--cv-max-iter 3000]
        every trial the search ran (kept by ``realistic_grid.py grid --keep``) fitted on all spots and scored: was
        a good map among the trials (search) and did the ranking find it (ranking)? ``--cv`` also re-solves every
        trial on every fold to ``--cv-tol`` (warm from nothing) and records its held-out loss, so the ranking on
        truncated solves can be set beside the ranking on converged ones.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from realistic_grid import DESIGN, as_data, kmeans_ari


def cell(layout: str, sigma: float, seed: int = 0):
    from s3r.simulate import simulate
    from s3r.tune.evaluate import make_problem

    sim = simulate(layout, sigma=sigma, seed=seed, design=DESIGN)
    problem = make_problem(as_data(sim), None)
    return sim, problem


def fit_all(problem, params: list[dict], tol: float, max_iter: int, sim=None):
    """Each absolute parameter set fitted on all spots by the final fit itself (``S3R`` with the tuning's default
    model, as ``realistic_grid.py`` fits the selected trial; ``tol`` None = the estimator's default 1e-5);
    (coefficients (n, B, p), converged, iterations)."""
    from s3r import S3R
    from s3r.tune.space import DEFAULT_CONFIG

    from realistic_grid import estimator_kwargs

    coefs, conv, iters = [], [], []
    for par in params:
        kwargs, _ = estimator_kwargs({"model": DEFAULT_CONFIG["model"], **par})
        if tol is not None:
            kwargs.update(tol=tol, max_iter=max_iter)
        model = S3R(**kwargs).fit(sim.X, sim.y, sim.coords)
        coefs.append(np.asarray(model.coef_))
        conv.append(bool(model.report_.get("converged")))
        iters.append(int(model.report_.get("iterations", -1)))
    return np.stack(coefs, axis=1), np.array(conv), np.array(iters)


def score(sim, coef_b: np.ndarray) -> dict:
    truth = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(np.abs(coef_b) > 0, axis=0)).tolist())
    return {"ari": kmeans_ari(coef_b, sim.regions), "n_selected": len(selected), "n_true_selected": len(selected & truth),
            "n_true_support": len(truth), "all_zero": not selected}


def absolute(rel: dict, scales: dict) -> dict:
    return {k: float(rel[k]) * float(scales[k]) for k in ("lambda_smooth", "alpha", "beta")}


def run(sim, problem, rel_params: list[dict], tol: float, max_iter: int, out: Path, extra: list[dict] | None = None, tag: dict | None = None):
    scales = problem.natural_scales()
    params = [absolute(r, scales) for r in rel_params]
    cpu, load = time.process_time(), os.getloadavg()
    coef, conv, iters = fit_all(problem, params, tol, max_iter, sim)
    cpu = time.process_time() - cpu
    with out.open("a") as fh:
        for b, rel in enumerate(rel_params):
            row = {**(tag or {}), "rel": rel, "abs": params[b], **score(sim, coef[:, b, :]), "converged": bool(conv[b]),
                   "iterations": int(iters[b]), **((extra or [{}] * len(rel_params))[b])}
            fh.write(json.dumps(row) + "\n")
    print(f"{len(params)} fits, {cpu:.0f} CPU s, load {load[0]:.1f}", flush=True)


def cmd_grid(args):
    sim, problem = cell(args.layout, args.sigma, args.seed)
    rel = [{"lambda_smooth": l, "alpha": a, "beta": b} for l, a, b in itertools.product(args.lam, args.alpha, args.beta)]
    run(sim, problem, rel, args.tol, args.max_iter, Path(args.out), tag={"layout": args.layout, "sigma": args.sigma, "mode": "grid"})


def cv_losses(problem, folds, params: list[dict], tol: float, max_iter: int):
    """Held-out loss per trial and fold (user units), re-solved cold to ``tol``; and the unconverged count."""
    from s3r import cv

    losses, unconv = [], 0
    for k in np.unique(folds):
        sol = cv.solve_fold(problem, params, folds, int(k), tol=tol, max_iter=max_iter, chunk=200)
        losses.append(cv.fold_losses(problem, sol, folds, int(k)))
        unconv += int((~sol.converged).sum())
    return np.stack(losses, axis=1), unconv  # (B, folds)


def cmd_trials(args):
    import pandas as pd

    folder = Path(args.kept)
    layout, sigma, seed = re.fullmatch(r"(.+)_sigma([0-9.]+)_seed(\d+)", folder.name).groups()
    sim, problem = cell(layout, float(sigma), int(seed))
    trials = [t for f in sorted(folder.glob("round_*/results.json")) for t in json.loads(f.read_text())["trials"] if t["state"] == "COMPLETE"]
    best = json.loads((folder / "best_params.json").read_text())
    chosen = best.get("tuning", best).get("trial")
    if args.top:
        ranked = sorted(trials, key=lambda t: t["value"])
        trials = ranked[: args.top] + [t for t in ranked[args.top:] if t["number"] == chosen]
    rel = [t["search"] for t in trials]
    extra = [{"trial": t["number"], "cv_loss": t["value"], "cv_se": t["se"], "pieces": t.get("pieces"), "chosen": t["number"] == chosen,
              "cv_unconverged": int(sum(not c for c in t.get("converged", [])))} for t in trials]
    if args.cv:
        folds = pd.read_csv(folder / "folds.tsv", sep="\t")["fold"].to_numpy()
        scales = problem.natural_scales()
        cpu = time.process_time()
        L, unconv = cv_losses(problem, folds, [absolute(r, scales) for r in rel], args.cv_tol, args.cv_max_iter)
        print(f"CV re-solve: {time.process_time() - cpu:.0f} CPU s, {unconv} unconverged, load {os.getloadavg()[0]:.1f}", flush=True)
        for e, row in zip(extra, L):
            e["cv_tight"] = float(row.mean())
            e["cv_tight_se"] = float(row.std(ddof=1) / np.sqrt(row.size))
    run(sim, problem, rel, args.tol, args.max_iter, Path(args.out), extra=extra,
        tag={"layout": layout, "sigma": float(sigma), "mode": "trials"})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid")
    g.add_argument("layout")
    g.add_argument("sigma", type=float)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--lam", nargs="+", type=float, default=[1e-3, 1e-2, 1e-1])
    g.add_argument("--alpha", nargs="+", type=float, default=[1e-3, 1e-2, 1e-1])
    g.add_argument("--beta", nargs="+", type=float, default=[1e-3, 1e-2, 1e-1])
    t = sub.add_parser("trials")
    t.add_argument("kept")
    t.add_argument("--top", type=int, default=0, help="only the best TOP trials by their (truncated) CV loss; 0 = all")
    t.add_argument("--cv", action="store_true")
    t.add_argument("--cv-tol", type=float, default=1e-3)
    t.add_argument("--cv-max-iter", type=int, default=3000)
    for s in (g, t):
        s.add_argument("--tol", type=float, default=None, help="final-fit tolerance (default: the estimator's)")
        s.add_argument("--max-iter", type=int, default=4000)
        s.add_argument("--out", required=True)
    args = p.parse_args()
    cmd_grid(args) if args.cmd == "grid" else cmd_trials(args)


if __name__ == "__main__":
    main()
