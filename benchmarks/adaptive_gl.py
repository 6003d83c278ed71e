"""Adaptive (reweighted) sparse group lasso on a kept grid cell (issue 17, session 15): does a second stage whose
per-feature penalty factors are inverse to the first stage's column norms recover a better support at p > n?

For one cell kept by ``realistic_grid.py grid --keep`` (its data, folds, configuration and chosen trial):

- stage 1: the chosen trial (λ, α, β) solved on all spots as the final fit solves it (``S3R``'s gaussian solve:
  tolerance 1e-5, mixed precision); its solver-scale column norms c_j = ‖W̃_:j‖₂ give the factors
  f_j = (max_k c_k / c_j)^γ on the support (c_j > ε max c; the other features are left out of stage 2);
- stage 2: the same λ (absolute), α₂ = a · α_rel · α_max(stage 2), β₂ = b · β_rel · β_max(stage 2) — the chosen
  trial's relative α, β times multipliers a, b, on the natural scales of the reweighted problem (its α, β that zero
  every coefficient, ``Problem.natural_scales`` with the factors) — for every (a, b) of a small grid, solved on all
  spots and scored as the grid scores a map (``realistic_grid.kmeans_ari``, features selected true / false);
- the same two-stage procedure cross-validated on the tuning's own folds, **without the truth**: per fold stage 1 on the
  training spots (to ``--cv-tol``), its factors, the reweighted problem's natural scales on those spots, every (a, b)
  solved and scored on the held-out spots; stage 1 alone scored the same way beside it. The choice among (a, b) is the
  lowest CV loss, or (one-SE) the fewest features within one SE of it;
- ``--steps 2``: a second reweighting from the chosen stage-2 map (full data and CV, same a, b).

    python benchmarks/adaptive_gl.py benchmarks/out/grid_s15ad_keep/<cell> [--mults 0.1 0.25 0.5 1 2] [--start chosen|best] [--gamma 1]
                                     [--steps 2] --out benchmarks/out/adaptive_s15.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from realistic_grid import DESIGN, as_data, kmeans_ari

EPS = 1e-3  # a column below this share of the largest column norm counts as zero (cv.map_features' tolerance)


def load_cell(folder: Path, start: str = "chosen", mult1: float = 1.0) -> dict:
    import pandas as pd

    from s3r.simulate import simulate
    from s3r.tune.evaluate import make_problem

    layout, sigma, seed = re.fullmatch(r"(.+)_sigma([0-9.]+)_seed(\d+)", folder.name).groups()
    sim = simulate(layout, sigma=float(sigma), seed=int(seed), design=DESIGN)
    config = json.loads((folder / "config.json").read_text())
    best = json.loads((folder / "best_params.json").read_text())
    tuning = best.get("tuning", best)
    if start == "best":  # stage 1 at the CV-best trial instead of the one-SE choice
        trials = [t for f in sorted(folder.glob("round_*/results.json")) for t in json.loads(f.read_text())["trials"]]
        trial = next(t for t in trials if t["number"] == tuning["best_trial"])
        tuning = {**tuning, **trial["params"], "search": trial["search"], "trial": trial["number"]}
    return {"layout": layout, "sigma": float(sigma), "seed": int(seed), "sim": sim, "config": config, "tuning": tuning,
            "problem": make_problem(as_data(sim), config), "folds": pd.read_csv(folder / "folds.tsv", sep="\t")["fold"].to_numpy(),
            "params": {k: float(tuning[k]) * (mult1 if k != "lambda_smooth" else 1.0) for k in ("lambda_smooth", "alpha", "beta")},
            "rel": tuning["search"]}


def factors(W: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(support, factors on it) from a solver-scale map (n, p): f_j = (max c / c_j)^γ, the strongest feature at 1."""
    c = np.linalg.norm(np.asarray(W, dtype=np.float64), axis=0)
    top = float(c.max()) if c.size else 0.0
    support = np.flatnonzero(c > EPS * top) if top > 0 else np.zeros(0, dtype=np.int64)
    return support, (top / c[support]) ** gamma


def restricted(problem, support: np.ndarray, f: np.ndarray):
    """The same problem on the support's features only, penalised by ``f`` (scaling, intercept, graph unchanged)."""
    return replace(problem, X=np.ascontiguousarray(problem.X[:, support]), x_scale=problem.x_scale[support],
                   n_features=int(support.size), penalty_factor=np.asarray(f, dtype=np.float64))


def solve_full(problem, params: list[dict], tol: float = 1e-5, max_iter: int = 20_000):
    """Every parameter set on all spots in one batched solve, as ``S3R.fit`` solves the gaussian problem (mixed
    precision, tolerance 1e-5): (solver-scale W (n, B, p_s), converged, iterations)."""

    from s3r.solver import solve_batch

    lam, alpha, beta = problem.solver_penalties(*(np.array([p[k] for p in params]) for k in ("lambda_smooth", "alpha", "beta")))
    B = len(params)
    res = solve_batch(problem.X, np.repeat(problem.y[:, None], B, axis=1), smooth=problem.smooth, operator=problem.operator,
                      lambda_smooth=lam, alpha=alpha, beta=beta, free_rows=problem.free_rows(), covariates=problem.covariates,
                      penalty_factor=problem.penalty_factor, tol=tol, max_iter=max_iter, device=problem.device, dtype="mixed")
    return res.W.double().cpu().numpy(), np.asarray(res.converged, dtype=bool), np.asarray(res.iterations)


def embed(W_s: np.ndarray, support: np.ndarray, p: int) -> np.ndarray:
    out = np.zeros(W_s.shape[:-1] + (p,))
    out[..., support] = W_s
    return out


def score(cell: dict, W: np.ndarray) -> dict:
    """The grid's scores of a solver-scale map (n, p) on the user's scale."""
    sim, problem = cell["sim"], cell["problem"]
    coef = W * (problem.y_scale / problem.x_scale)
    truth = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(coef != 0, axis=0)).tolist())
    top = np.argsort(-np.linalg.norm(coef - coef.mean(axis=0), axis=0))[:5]  # the columns that steer k-means most
    return {"ari": kmeans_ari(coef, sim.regions), "n_selected": len(selected), "n_true": len(selected & truth),
            "n_true_support": len(truth),
            "top5_true": int(sum(int(j) in truth for j in top if np.any(coef[:, j] != 0)))}


def stage_params(cell: dict, problem2, scales2: dict, mults: list[tuple[float, float]]) -> list[dict]:
    rel = cell["rel"]
    return [{"lambda_smooth": cell["params"]["lambda_smooth"], "alpha": a * float(rel["alpha"]) * scales2["alpha"],
             "beta": b * float(rel["beta"]) * scales2["beta"]} for a, b in mults]


def full_data(cell: dict, mults, gamma: float) -> dict:
    """Stage 1 and every stage-2 candidate on all spots, scored."""
    problem, p = cell["problem"], cell["problem"].n_features
    W1, conv1, it1 = solve_full(problem, [cell["params"]])
    W1 = W1[:, 0]
    support, f = factors(W1, gamma)
    problem2 = restricted(problem, support, f)
    params2 = stage_params(cell, problem2, problem2.natural_scales(), mults)
    W2, conv2, it2 = solve_full(problem2, params2)
    stage2 = [{"a": a, "b": b, "params": params2[i], **score(cell, embed(W2[:, i], support, p)), "converged": bool(conv2[i]),
               "iterations": int(it2[i])} for i, (a, b) in enumerate(mults)]
    return {"stage1": {"params": cell["params"], **score(cell, W1), "converged": bool(conv1[0]), "iterations": int(it1[0]),
                       "support": int(support.size)}, "stage2": stage2, "W2": W2, "support": support}


def cv_two_stage(cell: dict, mults, gamma: float, tol: float, max_iter: int) -> dict:
    """Per fold: stage 1 on the training spots, its factors, every stage-2 candidate; held-out losses (folds, B)."""
    from s3r import cv

    problem, folds, config = cell["problem"], cell["folds"], cell["config"]
    predictor, k_nb = config["predictor"], config["model"]["k"]
    L1, L2, F2 = [], [], []
    for k in np.unique(folds):
        k = int(k)
        weights = cv.training_weights(folds, k)
        s1 = cv.solve_fold(problem, [cell["params"]], folds, k, tol=tol, max_iter=max_iter)
        L1.append(float(cv.fold_losses(problem, s1, folds, k, predictor, k=k_nb)[0]))
        support, f = factors(s1.W[:, 0].astype(np.float64), gamma)
        problem2 = restricted(problem, support, f)
        params2 = stage_params(cell, problem2, problem2.natural_scales(weights), mults)
        s2 = cv.solve_fold(problem2, params2, folds, k, tol=tol, max_iter=max_iter)
        L2.append(cv.fold_losses(problem2, s2, folds, k, predictor, k=k_nb))
        F2.append(cv.map_features(s2.W))
    return {"stage1": np.array(L1), "stage2": np.array(L2), "features2": np.array(F2)}


def choose(losses: np.ndarray, features: np.ndarray) -> tuple[int, int]:
    """(lowest CV loss, fewest features within one SE of it) over the candidates; losses (folds, B)."""
    mean = losses.mean(axis=0)
    se = losses.std(axis=0, ddof=1) / np.sqrt(losses.shape[0])
    best = int(np.argmin(mean))
    within = np.flatnonzero(mean <= mean[best] + se[best])
    size = features.mean(axis=0)
    one_se = int(within[np.lexsort((mean[within], size[within]))[0]])
    return best, one_se


def reweight_again(cell: dict, full: dict, i: int, gamma: float) -> dict:
    """A second reweighting from stage-2 candidate ``i``'s full-data map, the same a, b."""
    problem, p = cell["problem"], cell["problem"].n_features
    W2 = embed(full["W2"][:, i], full["support"], p)
    support, f = factors(W2, gamma)
    problem3 = restricted(problem, support, f)
    c = full["stage2"][i]
    params3 = stage_params(cell, problem3, problem3.natural_scales(), [(c["a"], c["b"])])
    W3, conv, it = solve_full(problem3, params3)
    return {"params": params3[0], **score(cell, embed(W3[:, 0], support, p)), "converged": bool(conv[0]), "iterations": int(it[0])}


def main(folder: Path, args) -> None:
    cell = load_cell(folder, args.start, args.stage1_mult)
    mults = list(itertools.product(args.alpha_mults or args.mults, args.mults))
    cpu, load = time.process_time(), os.getloadavg()
    full = full_data(cell, mults, args.gamma)
    cv_res = cv_two_stage(cell, mults, args.gamma, args.cv_tol, args.cv_max_iter)
    best, one_se = choose(cv_res["stage2"], cv_res["features2"])
    L1, L2 = cv_res["stage1"], cv_res["stage2"]
    se = lambda a: float(a.std(ddof=1) / np.sqrt(a.shape[0]))  # noqa: E731
    for i, c in enumerate(full["stage2"]):
        c.update(cv=float(L2[:, i].mean()), cv_se=se(L2[:, i]), cv_features=float(cv_res["features2"][:, i].mean()))
    row = {"layout": cell["layout"], "sigma": cell["sigma"], "seed": cell["seed"], "gamma": args.gamma, "start": args.start,
           "stage1_mult": args.stage1_mult, "trial": cell["tuning"]["trial"],
           "rel": cell["rel"], "stage1": {**full["stage1"], "cv": float(L1.mean()), "cv_se": se(L1)}, "stage2": full["stage2"],
           "cv_best": best, "cv_one_se": one_se, "oracle": int(np.argmax([c["ari"] for c in full["stage2"]])),
           "null_cv_loss": cell["tuning"].get("null_cv_loss"), "trend_cv_loss": cell["tuning"].get("trend_cv_loss")}
    if args.steps >= 2:
        row["stage3_cv_best"] = reweight_again(cell, full, best, args.gamma)
    row.update(cpu_s=time.process_time() - cpu, load_before=load, load_after=os.getloadavg())
    with Path(args.out).open("a") as fh:
        fh.write(json.dumps(row, default=float) + "\n")
    report(row)


def report(row: dict) -> None:
    s1 = row["stage1"]
    rel = ", ".join(f"{row['rel'][k]:.3g}" for k in ("lambda_smooth", "alpha", "beta"))
    print(f"{row['layout']} σ {row['sigma']:g} (trial #{row['trial']} {row['start']}, rel. λ, α, β {rel}, stage-1 α, β × "
          f"{row['stage1_mult']:g}): stage 1 ARI {s1['ari']:.3f}, {s1['n_selected']} selected ({s1['n_true']} / {s1['n_true_support']} "
          f"true; {s1['top5_true']} of the 5 most varying), CV {s1['cv']:.4g} ± {s1['cv_se']:.2g}; null {row['null_cv_loss']}", flush=True)
    for i, c in enumerate(row["stage2"]):
        tags = "".join(t for t, j in ((" CV-best", row["cv_best"]), (" one-SE", row["cv_one_se"]), (" oracle", row["oracle"])) if j == i)
        print(f"  a {c['a']:<5g} b {c['b']:<5g} ARI {c['ari']:.3f}  {c['n_selected']:4d} ({c['n_true']:2d} true, "
              f"top-5 {c['top5_true']})  CV {c['cv']:.4g} ± "
              f"{c['cv_se']:.2g}  features {c['cv_features']:.1f}{'' if c['converged'] else ' UNCONVERGED'}{tags}", flush=True)
    if "stage3_cv_best" in row:
        c = row["stage3_cv_best"]
        print(f"  reweighted twice (CV-best a, b): ARI {c['ari']:.3f}, {c['n_selected']} ({c['n_true']} true)", flush=True)
    print(f"  {row['cpu_s']:.0f} CPU s, load {row['load_before'][0]:.1f} → {row['load_after'][0]:.1f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cells", nargs="+")
    parser.add_argument("--mults", nargs="+", type=float, default=[0.1, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--alpha-mults", nargs="+", type=float, help="multipliers a of α (default: --mults); --mults then sets b only")
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--start", choices=["chosen", "best"], default="chosen", help="stage 1 at the tuning's chosen or CV-best trial")
    parser.add_argument("--stage1-mult", type=float, default=1.0, help="stage 1 at the trial's α, β times this (a denser first stage)")
    parser.add_argument("--cv-tol", type=float, default=1e-3)
    parser.add_argument("--cv-max-iter", type=int, default=2000)
    parser.add_argument("--out", required=True)
    arguments = parser.parse_args()
    for name in arguments.cells:
        main(Path(name), arguments)
