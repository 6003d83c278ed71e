"""Study a kept realistic-grid cell from its CV fold maps alone (no new fits; issue 17).

``realistic_grid.py grid --keep DIR`` leaves, per cell, ``round_*/fold_k.npz``: every trial's map W fitted on that
fold's training spots (the tuning's truncated solve, on the solver's standardised scale, all spots). From these,
per trial: the CV loss and its SE (``results.json``), the ARI of each fold map against the true regions (k-means as
the grid scores it), the **agreement of the fold maps with each other** (mean pairwise ARI between the k-means
partitions of the five fold maps at the true number of regions k) and the ARI of the fold maps' average. That
agreement still uses the truth through k; ``agree_sil`` is the truth-free form a library rule could use: k chosen by
the report's own domain rule (``s3r.report.domains.spot_domains``, largest silhouette in 2..8) on the fold maps'
average, on the solver's scale, then the mean pairwise ARI of the fold maps' partitions at that k. Then the choice
of a few rules inside the one-SE window (and whether that window reaches past the intercept-only model's CV loss),
scored by those fold-map ARIs.

    python benchmarks/fold_maps.py benchmarks/out/grid_s13_keep/<layout>_sigma<σ>_seed0 [...] [--top 12]

The fold maps are the tuning's truncated solves, not the final fit: their ARI is a proxy for the refit's, checked
against the grid's recorded figure for the chosen trial where the grid's jsonl is given (``--grid``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import warnings
from pathlib import Path

import numpy as np


def partition(W: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():  # identical rows (an all-zero map) make k-means warn
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(W)


def agreement_silhouette(solver_maps: list[np.ndarray]) -> tuple[float, int]:
    """Truth-free agreement: k by silhouette on the average map (the report's domain rule), pairwise ARI at that k."""
    from sklearn.metrics import adjusted_rand_score as ari

    from s3r.report.domains import spot_domains

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k, _ = spot_domains(np.mean(solver_maps, axis=0))
        if k < 2:
            return 0.0, k
        parts = [spot_domains(W, k=k)[0] if len(np.unique(W, axis=0)) >= k else np.zeros(len(W), int) for W in solver_maps]
    return float(np.mean([ari(a, b) for a, b in itertools.combinations(parts, 2)])), k


def study(cell: Path, top: int) -> dict:
    from sklearn.metrics import adjusted_rand_score as ari

    from s3r.simulate import simulate

    m = re.fullmatch(r"(.+)_sigma([0-9.]+)_seed(\d+)", cell.name)
    layout, sigma, seed = m.group(1), float(m.group(2)), int(m.group(3))
    sim = simulate(layout, sigma=sigma, seed=seed, design="expression")
    k = len(np.unique(sim.regions))
    x_scale = np.sqrt(np.mean(sim.X**2, axis=0))  # the solver's feature scale (root mean square); W / x_scale ∝ coef_
    trials = {t["number"]: t for f in sorted(cell.glob("round_*/results.json")) for t in json.loads(f.read_text())["trials"]}
    maps: dict[int, list[np.ndarray]] = {}
    solver_maps: dict[int, list[np.ndarray]] = {}
    for npz in sorted(cell.glob("round_*/fold_*.npz")):
        z = np.load(npz)
        for b, number in enumerate(z["numbers"]):
            solver_maps.setdefault(int(number), []).append(np.asarray(z["W"][:, b, :], dtype=np.float64))
            maps.setdefault(int(number), []).append(solver_maps[int(number)][-1] / x_scale)
    ranked = sorted(trials.values(), key=lambda t: (t["value"], t["number"]))
    best_file = cell / "best_params.json"  # absent while a search runs: then the best trial stands for the choice
    tuning = json.loads(best_file.read_text())["tuning"] if best_file.exists() else {}
    chosen, best = tuning.get("trial", ranked[0]["number"]), tuning.get("best_trial", ranked[0]["number"])
    null = tuning.get("null_cv_loss") or next((json.loads(f.read_text())["null"]["value"] for f in cell.glob("round_*/results.json")), None)
    limit = ranked[0]["value"] + (ranked[0]["se"] or 0.0)
    window = [t["number"] for t in ranked if t["value"] <= limit]
    wanted = set(t["number"] for t in ranked[:top]) | set(window) | {chosen, best}
    rows = []
    for t in ranked:
        n = t["number"]
        if n not in wanted:
            continue
        parts = [partition(W, k) for W in maps[n]]
        fold_ari = [ari(sim.regions, p) for p in parts]
        agree = [ari(a, b) for a, b in itertools.combinations(parts, 2)]
        avg = np.mean(maps[n], axis=0)
        agree_sil, k_sil = agreement_silhouette(solver_maps[n])
        rows.append({
            "trial": n, "cv": t["value"], "se": t["se"], "cv_null": t["value"] / null if null else None,
            "pieces": t.get("pieces"), "features": t.get("features"), "converged": sum(t["converged"]),
            "in_window": n in window, "fold_ari": float(np.mean(fold_ari)), "fold_ari_sd": float(np.std(fold_ari)),
            "agreement": float(np.mean(agree)), "agree_sil": agree_sil, "k_sil": k_sil, "avg_map_ari": ari(sim.regions, partition(avg, k)),
            "avg_map_features": int(np.sum(np.any(np.abs(avg) > 1e-3 * np.abs(avg).max(), axis=0))) if np.any(avg) else 0,
            "params": t["params"],
        })
    by = {r["trial"]: r for r in rows}
    inw = [r for r in rows if r["in_window"]]
    rules = {
        "one_se (default)": chosen,
        "best": best,
        "window: most agreeing fold maps": max(inw, key=lambda r: (r["agreement"], -r["trial"]))["trial"],
        "window: most agreeing, k by silhouette (truth-free)": max(inw, key=lambda r: (r["agree_sil"], -r["trial"]))["trial"],
    }
    return {"cell": cell.name, "layout": layout, "sigma": sigma, "k": k, "null": null, "window": window, "rows": rows,
            "best_cv": ranked[0]["value"], "best_se": ranked[0]["se"], "window_past_null": bool(null is not None and limit > null),
            "rules": {name: {"trial": n, "fold_ari": by[n]["fold_ari"], "avg_map_ari": by[n]["avg_map_ari"],
                             "agreement": by[n]["agreement"]} for name, n in rules.items()},
            "corr_agreement_fold_ari": float(np.corrcoef([r["agreement"] for r in rows], [r["fold_ari"] for r in rows])[0, 1]),
            "corr_cv_fold_ari": float(np.corrcoef([r["cv"] for r in rows], [r["fold_ari"] for r in rows])[0, 1])}


def show(res: dict) -> None:
    print(f"\n## {res['cell']} (k = {res['k']}, null CV {res['null']:.4g}, best {res['best_cv']:.4g} + SE {res['best_se']:.3g} = "
          f"{res['best_cv'] + res['best_se']:.4g}: window {'reaches past' if res['window_past_null'] else 'stays below'} the null; "
          f"one-SE window {res['window']})")
    print("| trial | CV ± SE | CV / null | features | pieces | conv. folds | fold-map ARI (sd) | fold agreement | agreement, k by silhouette | avg-map ARI |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in res["rows"]:
        mark = "*" if r["in_window"] else ""
        print(f"| #{r['trial']}{mark} | {r['cv']:.4g} ± {r['se']:.2g} | {r['cv_null']:.3f} | {r['features']:.1f} | {r['pieces']:.0f} | "
              f"{r['converged']}/5 | {r['fold_ari']:.3f} ({r['fold_ari_sd']:.2f}) | {r['agreement']:.3f} | {r['agree_sil']:.3f} (k {r['k_sil']}) | "
              f"{r['avg_map_ari']:.3f} |")
    for name, v in res["rules"].items():
        print(f"- {name}: #{v['trial']} fold-map ARI {v['fold_ari']:.3f}, avg-map ARI {v['avg_map_ari']:.3f}, agreement {v['agreement']:.3f}")
    print(f"- corr(agreement, fold ARI) {res['corr_agreement_fold_ari']:.2f}; corr(CV, fold ARI) {res['corr_cv_fold_ari']:.2f} (over the rows shown)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cells", nargs="+")
    ap.add_argument("--top", type=int, default=12, help="trials shown besides the one-SE window (best CV first)")
    ap.add_argument("--out", help="append each cell's result as a JSON line")
    args = ap.parse_args()
    for cell in args.cells:
        res = study(Path(cell), args.top)
        show(res)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
