"""How much can any selection rule gain? Every trial inside the one-SE window of a kept grid cell, refitted and scored.

The one-SE rule hands on the smallest map among the trials whose CV loss is within one standard error of the best
(``tune.select``); the realistic grid scores the handed-on map by k-means ARI against the true regions. This script
scores *every* trial of that window the same way, so a rule's figure can be read against the best and the worst map
the window holds (the "oracle": the best ARI in the window, which uses the truth and is a ceiling, not a procedure).
It also re-solves each window trial on every fold to convergence (cold, ``max_iter`` 20,000) and recounts its map
pieces, to see whether sizes taken on the tuning's capped solves (``solver.max_iter`` 500) mislead the rule
(session 17's finding at cap 300); ``--no-refit`` skips that (the 2,000-spot cells take minutes per cell).

    python benchmarks/realistic_grid.py grid --keep benchmarks/out/grid_keep ...   # once, to keep the tuning files
    python benchmarks/selection_window.py score benchmarks/out/grid_keep [--cells NAME ...] [--no-refit] \
        [--out benchmarks/out/selection_window.jsonl]
    python benchmarks/selection_window.py table [--out benchmarks/out/selection_window.jsonl]   # rules × cells

Rules in the table (all computed from the same window rows, so they differ only in the choice): ``one_se`` (the
library's: fewest CV-map pieces, then the strongest penalties), ``refit_pieces`` (pieces of the converged re-solves),
``converged_only`` (pieces of trials whose every fold solve converged; the others last), ``best`` (lowest CV loss),
``max_lambda`` (the most smoothing in the window), ``max_strength`` (largest sum of the three penalties' positions),
``min_features``, ``oracle`` and ``worst`` (best and worst ARI in the window: what is at stake). ``--all-trials``
scores every trial of the search too (rows marked ``in_window``), for the search's own ceiling.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import numpy as np

from realistic_grid import DESIGN, PREPRINT_MEAN, estimator_kwargs, kmeans_ari

OUT = Path(__file__).resolve().parent / "out" / "selection_window.jsonl"
REFIT_MAX_ITER = 20_000


def read_cell(folder: Path) -> tuple[dict, list[dict], list[dict]]:
    """The cell's tuning config, its results documents (rounds in order) and their completed trials."""
    config = json.loads((folder / "config.json").read_text())
    docs = [json.loads(p.read_text()) for p in sorted(folder.glob("round_*/results.json"))]
    trials = [t for d in docs for t in d["trials"] if t["state"] == "COMPLETE"]
    return config, docs, trials


def one_se_window(trials: list[dict]) -> tuple[dict, list[dict]]:
    """The best trial and every trial within one SE of it (``tune.select``'s window)."""
    best = min(trials, key=lambda t: (t["value"], t["number"]))
    limit = best["value"] + (best["se"] or 0.0)
    return best, [t for t in trials if t["value"] <= limit]


def converged_pieces(folder: Path, config: dict, docs: list[dict], window: list[dict], sim) -> np.ndarray:
    """Mean map pieces over the folds of each window trial re-solved cold to convergence."""
    from realistic_grid import as_data
    from s3r.tune.evaluate import evaluate_fold, make_problem
    from s3r.tune.space import resolve_config

    config = resolve_config(config)
    config["solver"] = {**config["solver"], "max_iter": REFIT_MAX_ITER, "warm_start": False}
    scales = next((d["scales"] for d in reversed(docs) if d.get("scales")), None)
    data = as_data(sim)
    problem = make_problem(data, config)
    doc = {"round": len(docs), "distributions": docs[0].get("distributions"),
           "trials": [{"number": t["number"], "params": t["params"], "search": t["search"]} for t in window]}
    pieces = [[t["pieces"] for t in evaluate_fold(data, config, doc, k, problem=problem, scales=scales)["trials"]]
              for k in range(config["folds"])]
    return np.mean(pieces, axis=0)


def fit_and_score(sim, trial: dict, model: dict) -> dict:
    """The trial's parameters fitted on the whole sample as the grid's final fit is, scored as the grid scores."""
    from s3r import S3R

    kwargs, _ = estimator_kwargs({**trial["params"], "smooth": model["smooth"], "model": model})
    W = np.asarray(S3R(**kwargs).fit(sim.X, sim.y, sim.coords).coef_)
    truth = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(W != 0, axis=0)).tolist())
    return {"ari": kmeans_ari(W, sim.regions), "n_selected": len(selected), "n_true_selected": len(selected & truth)}


def score_cell(folder: Path, refit: bool, all_trials: bool = False) -> dict:
    from s3r import tune
    from s3r.simulate import simulate
    from s3r.tune.space import _log_params, resolve_config

    layout, sigma, seed = re.fullmatch(r"(.+)_sigma([0-9.]+)_seed(\d+)", folder.name).groups()
    sim = simulate(layout, sigma=float(sigma), seed=int(seed), design=DESIGN)
    config, docs, trials = read_cell(folder)
    resolved = resolve_config(config)
    best, window = one_se_window(trials)
    wall = time.perf_counter()
    refitted = dict(zip([t["number"] for t in window], converged_pieces(folder, config, docs, window, sim))) if refit else {}
    refit_s = time.perf_counter() - wall
    scored = trials if all_trials else window
    positions = _log_params([t.get("search") or t["params"] for t in scored], resolved)
    inside = {t["number"] for t in window}
    rows = [{"number": t["number"], "value": t["value"], "in_window": t["number"] in inside, "pieces": t["pieces"],
             "features": t.get("features"), "refit_pieces": None if t["number"] not in refitted else float(refitted[t["number"]]),
             "positions": pos.tolist(), "converged": t["converged"], **fit_and_score(sim, t, resolved["model"])}
            for t, pos in zip(scored, positions)]
    return {"cell": folder.name, "layout": layout, "sigma": float(sigma), "seed": int(seed), "best": best["number"],
            "library_one_se": tune.select(docs, config)["trial"], "refit_s": refit_s if refit else None, "window": rows}


def _pieces_then_strength(size):
    return lambda rows: min(rows, key=lambda r: (size(r), -sum(r["positions"]), r["number"]))


RULES = {
    "one_se": _pieces_then_strength(lambda r: r["pieces"]),
    "refit_pieces": _pieces_then_strength(lambda r: math.inf if r["refit_pieces"] is None else r["refit_pieces"]),
    "converged_only": _pieces_then_strength(lambda r: r["pieces"] if all(r["converged"]) else math.inf),
    "best": lambda rows: min(rows, key=lambda r: (r["value"], r["number"])),
    "max_lambda": lambda rows: max(rows, key=lambda r: (r["positions"][0], -r["number"])),
    "max_strength": lambda rows: max(rows, key=lambda r: (sum(r["positions"]), -r["number"])),
    "min_features": lambda rows: min(rows, key=lambda r: (r["features"], r["pieces"], r["number"])),
    "oracle": lambda rows: max(rows, key=lambda r: r["ari"]),
    "worst": lambda rows: min(rows, key=lambda r: r["ari"]),
}


def table(path: Path) -> str:
    cells = {}
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        cells[doc["cell"]] = doc  # the last score of a cell wins
    docs = sorted(cells.values(), key=lambda d: (d["layout"], d["sigma"]))
    lines = ["| cell | window | capped | " + " | ".join(RULES) + " |", "| --- " * (len(RULES) + 3) + "|"]
    aris = {name: [] for name in RULES}
    for d in docs:
        rows = [r for r in d["window"] if r.get("in_window", True)]
        capped = sum(not all(r["converged"]) for r in rows)
        picks = {name: rule(rows) for name, rule in RULES.items()}
        if any(r["refit_pieces"] is None for r in rows):  # scored with --no-refit: no converged sizes to choose by
            picks["refit_pieces"] = None
        for name, r in picks.items():
            if r is not None:
                aris[name].append((d["sigma"], r["ari"]))
        assert picks["one_se"]["number"] == d["library_one_se"], f"{d['cell']}: the table's one_se is not the library's"
        lines.append(f"| {d['layout']} σ {d['sigma']:g} | {len(rows)} | {capped} | "
                     + " | ".join("–" if r is None else f"{r['ari']:.3f} (#{r['number']})" for r in picks.values()) + " |")
    lines.append("| **mean ARI** (cells with a figure) | | | " + " | ".join(f"**{np.mean([a for _, a in v]):.3f}**" for v in aris.values()) + " |")
    lines.append("| above the preprint | | | " + " | ".join(
        f"{sum(a > PREPRINT_MEAN[s] for s, a in v)} / {len(v)}" for v in aris.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("score")
    s.add_argument("kept", help="folder of kept tuning folders (realistic_grid.py grid --keep)")
    s.add_argument("--cells", nargs="+")
    s.add_argument("--no-refit", action="store_true")
    s.add_argument("--all-trials", action="store_true", help="score every trial of the search, not only the window's")
    s.add_argument("--out", default=str(OUT))
    t = sub.add_parser("table")
    t.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    if args.mode == "table":
        print(table(Path(args.out)))
        return
    for folder in sorted(p for p in Path(args.kept).iterdir() if (p / "best_params.json").exists()):
        if args.cells and folder.name not in args.cells:
            continue
        doc = score_cell(folder, refit=not args.no_refit, all_trials=args.all_trials)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(doc) + "\n")
        print(folder.name, "window", len(doc["window"]), flush=True)


if __name__ == "__main__":
    main()
