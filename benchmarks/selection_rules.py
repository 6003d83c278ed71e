"""Selection rules compared on the same trials: which trial would each rule hand on, and how good is its map?

The tuning's default, one-SE, keeps the smallest map within one standard error of the best trial's mean held-out
loss (the best trial's own fold spread). On small or wide problems that SE is large and the rule can hand on a
map 10–15 % worse than the best (Georgia, measured). The paired variant asks instead whether a trial is
distinguishable from the best on the same folds: mean(loss_t − loss_best) ≤ SE of those paired differences.
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

RULES = ("best", "one_se", "one_se_paired")


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
    if rule in ("best", "one_se"):
        return tune.select(results, {**config, "selection": rule})
    doc = tune.select(results, {**config, "selection": "best"})
    trials = [t for f in results for t in json.loads(f.read_text())["trials"] if t["state"] == "COMPLETE"]
    best = min(trials, key=lambda t: (t["value"], t["number"]))
    pick = paired_one_se(trials, best)
    return {**doc, **pick["params"], "trial": pick["number"], "cv_loss": pick["value"], "map_pieces": pick.get("pieces")}


def score(folder: Path, rule: str) -> dict:
    from s3r import S3R
    from s3r.simulate import simulate

    layout, sigma, seed = re.fullmatch(r"(.+)_sigma([0-9.]+)_seed(\d+)", folder.name).groups()
    sim = simulate(layout, sigma=float(sigma), seed=int(seed), design=DESIGN)
    best = chosen_params(folder, rule)
    kwargs, _ = estimator_kwargs(best)
    model = S3R(**kwargs).fit(sim.X, sim.y, sim.coords)
    W = np.asarray(model.coef_)
    truth = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(W != 0, axis=0)).tolist())
    return {"layout": layout, "sigma": float(sigma), "rule": rule, "trial": best["trial"], "cv_loss": best["cv_loss"],
            "map_pieces": best.get("map_pieces"), "params": {k: best[k] for k in ("lambda_smooth", "alpha", "beta")},
            "ari": kmeans_ari(W, sim.regions), "n_selected": len(selected), "n_true_selected": len(selected & truth),
            "n_true_support": len(truth), "effect_found": best.get("effect_found")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kept", help="folder of kept tuning folders (realistic_grid.py grid --keep)")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "selection_rules.jsonl"))
    args = parser.parse_args()
    for folder in sorted(p for p in Path(args.kept).iterdir() if (p / "config.json").exists()):
        for rule in args.rules:
            row = score(folder, rule)
            print(json.dumps(row))
            with open(args.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
