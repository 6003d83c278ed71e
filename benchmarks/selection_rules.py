"""Selection rules compared on the same trials: which trial would each rule hand on, and how good is its map?

The tuning's default, one-SE, keeps the smallest map within one standard error of the best trial's mean held-out
loss (the best trial's own fold spread). On small or wide problems that SE is large and the rule can hand on a
map 10–15 % worse than the best (Georgia, measured). The paired variant asks instead whether a trial is
distinguishable from the best on the same folds: mean(loss_t − loss_best) ≤ SE of those paired differences.
``one_se_features`` (the library's, opt-in) sizes the one-SE rule by the features the maps use instead of pieces.
This script reads kept tuning folders of the realistic grid (``realistic_grid.py grid --keep DIR``), applies
``best``, ``one_se`` (the library's select) and ``one_se_paired`` to the very same trials, refits each chosen
parameter set on the full simulated sample and scores its map as the grid does (k-means ARI against the true
regions, support recall / precision).

    python benchmarks/selection_rules.py benchmarks/out/grid_s7_keep [--out benchmarks/out/selection_rules.jsonl]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

from realistic_grid import DESIGN, estimator_kwargs, kmeans_ari

RULES = ("best", "one_se", "one_se_paired", "one_se_features")


def paired_one_se(trials: list[dict], best: dict) -> dict:
    """The smallest map among trials whose paired fold difference to the best is within its own SE."""
    ref = np.array(best["fold_losses"], dtype=np.float64)
    within = []
    for t in trials:
        d = np.array(t["fold_losses"], dtype=np.float64) - ref
        se = d.std(ddof=1) / math.sqrt(d.size) if d.size > 1 else 0.0
        if d.mean() <= se:
            within.append(t)
    return min(within, key=lambda t: (t["pieces"] if t.get("pieces") is not None else math.inf, t["number"]))


def chosen_params(folder: Path, rule: str) -> dict:
    from s3r import tune

    config = json.loads((folder / "config.json").read_text())
    results = sorted(folder.glob("round_*/results.json"))
    if rule in ("best", "one_se", "one_se_features"):
        return tune.select(results, {**config, "selection": rule})
    doc = tune.select(results, {**config, "selection": "best"})
    trials = [t for f in results for t in json.loads(f.read_text())["trials"] if t["state"] == "COMPLETE"]
    best = min(trials, key=lambda t: (t["value"], t["number"]))
    pick = paired_one_se(trials, best)
    return {**doc, **pick["params"], "trial": pick["number"], "cv_loss": pick["value"], "map_pieces": pick.get("pieces")}


def score(folder: Path, rule: str, skip_same_as: str | None = None) -> dict:
    """Refit the rule's choice and score it; with ``skip_same_as``, a choice equal to that rule's is not refitted."""
    import os
    import time

    from s3r import S3R
    from s3r.simulate import simulate

    layout, sigma, seed = re.fullmatch(r"(.+)_sigma([0-9.]+)_seed(\d+)", folder.name).groups()
    best = chosen_params(folder, rule)
    row = {"layout": layout, "sigma": float(sigma), "rule": rule, "trial": best["trial"], "best_trial": best["best_trial"],
           "cv_loss": best["cv_loss"], "null_cv_loss": best.get("null_cv_loss"), "map_pieces": best.get("map_pieces"),
           "map_features": best.get("map_features"), "params": {k: best[k] for k in ("lambda_smooth", "alpha", "beta")},
           "effect_found": best.get("effect_found")}
    if skip_same_as is not None and rule != skip_same_as and chosen_params(folder, skip_same_as)["trial"] == best["trial"]:
        return {**row, "same_as": skip_same_as}
    sim = simulate(layout, sigma=float(sigma), seed=int(seed), design=DESIGN)
    kwargs, _ = estimator_kwargs(best)
    load, cpu, wall = os.getloadavg()[0], time.process_time(), time.perf_counter()
    model = S3R(**kwargs).fit(sim.X, sim.y, sim.coords)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    W = np.asarray(model.coef_)
    truth = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(W != 0, axis=0)).tolist())
    report = getattr(model, "report_", {})
    return {**row, "ari": kmeans_ari(W, sim.regions), "all_zero": bool(not np.any(W != 0)), "n_selected": len(selected),
            "n_true_selected": len(selected & truth), "n_true_support": len(truth), "fit_cpu_s": cpu, "fit_wall_s": wall,
            "load": load, "converged": report.get("converged"), "iterations": report.get("iterations")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kept", help="folder of kept tuning folders (realistic_grid.py grid --keep)")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "selection_rules.jsonl"))
    parser.add_argument("--cells", nargs="+", help="only these kept folders (names, e.g. four_regions_highdim_sigma1_seed0)")
    parser.add_argument("--skip-same-as", help="do not refit a choice equal to this rule's (its figure is the grid's)")
    args = parser.parse_args()
    folders = sorted(p for p in Path(args.kept).iterdir() if (p / "best_params.json").exists())  # finished cells only
    for folder in folders:
        if args.cells and folder.name not in args.cells:
            continue
        for rule in args.rules:
            row = score(folder, rule, args.skip_same_as)
            print(json.dumps(row))
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
