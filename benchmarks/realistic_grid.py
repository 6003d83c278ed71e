"""Benchmark: tuned S3R on the realistic (expression) simulation design, six layouts × σ ∈ {0.5, 1, 2} (issue 17).

Data: ``s3r.simulate.simulate(layout, sigma=σ, seed=0, design="expression")`` on each layout's own points:
log1p-count features from shared programmes (sd ≈ 0.5–1, correlated, ~20 % zeros), the paper's region-wise
informative features, coefficients scaled so the signal ⟨x_i, w_i⟩ has sd 1 and a baseline (intercept) of 2,
so σ is the noise sd relative to the signal: σ = 0.5, 1, 2 give a signal R² of 0.8, 0.5, 0.2. (The older
``tune_bench.py`` grid uses the reference design, where σ ≤ 2 is noise far below a signal of sd ≈ 100.)

Per cell, **defaults only**: ``s3r.tune.run_search(data, None, out_dir)`` (no configuration, no hand-set
ranges), then the final fit ``s3r.S3R(**params)`` with everything the search selected passed through: the
keys of ``best_params.json`` (and of its ``model`` / ``params`` mappings, whichever the API writes) that
``S3R.__init__`` accepts, so new model keys (``fit_intercept``, ``scaling``, …) reach the final fit without a
change here; keys it does not accept are listed in the record (``dropped_keys``). Scores: ARI between the
true regions and k-means (k = the true number, ``KMeans(n_init=10, random_state=0)``) on the rows of the
fitted W; whether W is all zero (a map with nothing on it); selected features against the true ones;
the fit against the noiseless truth; the selected trial's CV loss against the intercept-only model's on the
same folds (predict the training mean: the yardstick a model with an intercept must beat).

Preprint comparison (../shared/README.md): mean ARI over its six layouts 0.70 / 0.67 / 0.61 at σ = 0.5 / 1 / 2.
Issue 17's target: every cell above the preprint's value at its σ, mean ≥ 0.80, no all-zero map.

    python benchmarks/realistic_grid.py grid  [--layouts ...] [--sigmas ...] [--seed 0 [1 2]] [--workers 1]
                                              [--out benchmarks/out/realistic_grid.jsonl] [--fresh]
    python benchmarks/realistic_grid.py table [--out benchmarks/out/realistic_grid.jsonl]   # markdown table

``grid`` resumes an existing output file (cells already in it are skipped) unless ``--fresh``. ``--config``
(JSON, ``s3r.tune`` settings) exists for debugging only; rows run with it are marked ``NOT DEFAULTS``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from bench_common import provenance

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
LAYOUTS = ("three_regions", "four_quadrants", "five_regions", "six_regions", "three_regions_highdim", "four_regions_highdim")
SIGMAS = (0.5, 1.0, 2.0)
DESIGN = "expression"
PREPRINT_MEAN = {0.5: 0.70, 1.0: 0.67, 2.0: 0.61}  # the preprint's mean ARI over six layouts, per σ
TARGET_MEAN_ARI = 0.80


ROUNDING = 1e-9  # a column whose spread over the spots is below this share of max |W| is constant up to rounding


def varying_columns(W: np.ndarray) -> np.ndarray:
    """Columns of W that vary over the spots by more than floating-point rounding. A map smoothed flat (one global
    regression) differs between spots by ~1e-14 of its size; k-means cuts that noise into clusters that can follow
    the regions (four_regions_highdim σ 2, trial #7: ARI 0.822 on a map constant to 1.8e-14; session 14)."""
    scale = float(np.abs(W).max()) if W.size else 0.0
    return W.std(axis=0) > ROUNDING * scale if scale > 0 else np.zeros(W.shape[1], dtype=bool)


def kmeans_ari(W: np.ndarray, regions: np.ndarray) -> float:
    """ARI of k-means on W's rows (the columns that vary beyond rounding); 0 for a spatially constant map."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    keep = varying_columns(np.asarray(W, dtype=np.float64))
    if not keep.any():
        return 0.0
    with warnings.catch_warnings():  # few distinct rows make k-means warn
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters=len(np.unique(regions)), n_init=10, random_state=0).fit_predict(np.asarray(W)[:, keep])
    return float(adjusted_rand_score(regions, labels))


def as_data(sim):
    from s3r.io import RegressionData

    return RegressionData(sim.X, sim.y, sim.coords, sim.spot_ids, sim.feature_names, "target")


def estimator_kwargs(best: dict) -> tuple[dict, list[str]]:
    """S3R keyword arguments from a selected parameter set, whatever shape the tuning API gives it.

    Later sources win: ``best["model"]`` (model settings), then ``best["params"]`` (a ready parameter set, as the
    workflow's best_params.json has), then top-level keys (λ, α, β, smooth, …). Only names ``S3R.__init__``
    accepts are kept; the others are returned so that a record shows what did not reach the final fit.
    """
    from s3r import S3R

    accepted = set(inspect.signature(S3R.__init__).parameters) - {"self"}
    source: dict = {}
    for key in ("model", "params"):
        if isinstance(best.get(key), dict):
            source.update(best[key])
    source.update({k: v for k, v in best.items() if not isinstance(v, dict)})
    kwargs = {k: v for k, v in source.items() if k in accepted}
    info_only = {"selection", "trial", "cv_loss", "cv_se", "best_trial", "best_cv_loss", "n_trials", "seconds", "source"}
    dropped = sorted(k for k in source if k not in accepted and k not in info_only)
    return kwargs, dropped


def null_cv_loss(y: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """Held-out MSE of predicting each fold by its training mean: mean over folds and its standard error."""
    losses = []
    for f in np.unique(folds):
        held = folds == f
        losses.append(float(np.mean((y[held] - y[~held].mean()) ** 2)))
    return float(np.mean(losses)), float(np.std(losses, ddof=1) / np.sqrt(len(losses)))


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def run_cell(layout: str, sigma: float, seed: int, workers: int | None, config: dict | None, keep: str | None = None,
             keep_states: bool = False) -> dict:
    import pandas as pd

    from s3r import S3R, tune
    from s3r.simulate import simulate

    sim = simulate(layout, sigma=sigma, seed=seed, design=DESIGN)
    noise = sim.y - sim.intercept - sim.signal
    with tempfile.TemporaryDirectory() as scratch:
        tmp = scratch if keep is None else Path(keep) / f"{layout}_sigma{sigma:g}_seed{seed}"
        load_before = os.getloadavg()
        wall, cpu = time.perf_counter(), time.process_time()
        returned = tune.run_search(as_data(sim), config, tmp, workers=workers, keep_states=keep_states and keep is not None)
        search_wall, search_cpu = time.perf_counter() - wall, time.process_time() - cpu
        best_file = Path(tmp) / "best_params.json"
        best = json.loads(best_file.read_text()) if best_file.exists() else {}
        best = {**returned, **best}  # the file is the record; the return value may add (seconds, …)
        folds_file = Path(tmp) / "folds.tsv"
        folds = pd.read_csv(folds_file, sep="\t")["fold"].to_numpy() if folds_file.exists() else None
        trials = [t for f in sorted(Path(tmp).glob("round_*/results.json")) for t in json.loads(f.read_text()).get("trials", [])]
    kwargs, dropped = estimator_kwargs(best)
    wall = time.perf_counter()
    model = S3R(**kwargs)
    model.fit(sim.X, sim.y, sim.coords)
    fit_wall = time.perf_counter() - wall
    W = np.asarray(model.coef_)
    if keep is not None:  # the final map beside the tuning files: benchmarks/domain_methods.py clusters it again
        np.savez(Path(keep) / f"{layout}_sigma{sigma:g}_seed{seed}_W.npz", W=W, coords=sim.coords, regions=sim.regions)
    pred = np.asarray(model.predict(sim.X))
    truth = sim.intercept + sim.signal
    true_support = set(sum(sim.informative.values(), []))
    selected = set(np.flatnonzero(np.any(W != 0, axis=0)).tolist())
    null_loss, null_se = null_cv_loss(sim.y, folds) if folds is not None else (None, None)
    cv_loss = best.get("cv_loss")
    return jsonable({
        "layout": layout,
        "sigma": sigma,
        "design": DESIGN,
        "seed": seed,
        "defaults": config is None,
        "config": config,
        "n_spots": sim.n_spots,
        "n_features": sim.n_features,
        "n_regions": sim.n_regions,
        "coef_scale": sim.coef_scale,
        "true_intercept": sim.intercept,
        "signal_r2": float(1 - noise.var() / sim.y.var()),
        "ari": kmeans_ari(W, sim.regions),
        "all_zero": bool(not np.any(W != 0)),
        "spatially_constant": bool(not varying_columns(W).any()),
        "max_spread_rel": float(W.std(axis=0).max() / np.abs(W).max()) if np.any(W) else 0.0,
        "n_selected": len(selected),
        "n_true_support": len(true_support),
        "n_true_selected": len(selected & true_support),
        "support_recall": len(selected & true_support) / len(true_support),
        "support_precision": len(selected & true_support) / max(len(selected), 1),
        "rel_rmse_W": float(np.sqrt(np.mean((W - sim.W) ** 2)) / np.sqrt(np.mean(sim.W**2))),
        "r2_vs_truth": float(1 - np.sum((pred - truth) ** 2) / np.sum((truth - truth.mean()) ** 2)),
        "r2_in_sample": float(1 - np.sum((sim.y - pred) ** 2) / np.sum((sim.y - sim.y.mean()) ** 2)),
        "intercept": float(getattr(model, "intercept_", 0.0)),
        "estimator_kwargs": kwargs,
        "dropped_keys": dropped,
        "best": best,
        "cv_loss": cv_loss,
        "cv_loss_null": null_loss,
        "cv_loss_null_se": null_se,
        "cv_ratio_to_null": (cv_loss / null_loss) if (cv_loss is not None and null_loss) else None,
        "n_trials_read": len(trials),
        "cv_unconverged_solves": int(sum(not c for t in trials for c in t.get("converged", []))),
        "cv_solves": int(sum(len(t.get("converged", [])) for t in trials)),
        "search_wall_s": search_wall,
        "search_cpu_s": search_cpu,
        "final_fit_wall_s": fit_wall,
        "final_report": {k: v for k, v in getattr(model, "report_", {}).items() if not isinstance(v, (list, dict))},
        "preprint_mean_ari": PREPRINT_MEAN.get(sigma),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    })


def above_preprint(row: dict) -> bool:
    return row["ari"] > PREPRINT_MEAN[row["sigma"]]


def cmd_grid(args) -> None:
    config = json.loads(args.config) if args.config else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists() and not args.fresh:
        done = {(r["layout"], r["sigma"], r.get("seed", 0)) for r in map(json.loads, out.read_text().splitlines()) if "layout" in r}
    else:
        out.write_text(json.dumps({"provenance": provenance(), "design": DESIGN, "seeds": args.seeds, "config": config,
                                   "workers": args.workers}) + "\n")
    for seed, layout, sigma in ((seed, layout, sigma) for seed in args.seeds for layout in args.layouts for sigma in args.sigmas):
        if (layout, sigma, seed) in done:
            continue
        try:
            row = run_cell(layout, sigma, seed, args.workers, config, args.keep, args.keep_states)
        except Exception as exc:  # a failure is a result: recorded, and the grid goes on
            traceback.print_exc()
            row = {"layout": layout, "sigma": sigma, "design": DESIGN, "seed": seed, "defaults": config is None,
                   "error": f"{type(exc).__name__}: {exc}", "loadavg_before": os.getloadavg()}
        with out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if "error" in row:
            print(f"{layout:22s} σ={sigma:<4} seed {seed} FAILED: {row['error']}", flush=True)
            continue
        print(f"{layout:22s} σ={sigma:<4} seed {seed} ARI {row['ari']:.3f}{' ALL-ZERO' if row['all_zero'] else ''} "
              f"selected {row['n_selected']} (recall {row['support_recall']:.2f}) CV/null {row['cv_ratio_to_null'] or float('nan'):.3f} "
              f"search {row['search_wall_s']:.0f} s wall", flush=True)
    print(table(out))


def _summary(done: list[dict], rows: list[dict], prefix: str) -> list[str]:
    """One line: mean ARI (overall and per σ) against the target and the preprint, cells above it, all-zero maps."""
    if not done:
        return []
    by_sigma = {s: [r["ari"] for r in done if r["sigma"] == s] for s in SIGMAS}
    means = " · ".join(f"σ={s:g}: {np.mean(v):.3f} (preprint {PREPRINT_MEAN[s]:.2f})" for s, v in by_sigma.items() if v)
    mean = float(np.mean([r["ari"] for r in done]))
    return [f"{prefix}Mean ARI {mean:.3f} over {len(done)} completed cells (target ≥ {TARGET_MEAN_ARI:.2f}); per σ: {means}; "
            f"above the preprint in {sum(above_preprint(r) for r in done)}/{len(rows)} cells; all-zero maps in "
            f"{sum(r['all_zero'] for r in done)}/{len(rows)}."]


def _fmt(x, spec=".3g") -> str:
    return "–" if x is None else format(x, spec)


def table(path) -> str:
    lines_in = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    header = next((r for r in lines_in if "provenance" in r), None)
    rows = [r for r in lines_in if "layout" in r]
    lines = []
    if header:
        p = header["provenance"]
        lines.append(f"Run at {p['time']} on commit {p['commit']}{' (library modified)' if p['dirty_library'] else ''}, "
                     f"{p['cpus']} CPUs, load at start {', '.join(f'{x:.1f}' for x in p['loadavg_at_start'])}; "
                     f"design {header.get('design')}, seed(s) {header.get('seeds', header.get('seed'))}.")
        lines.append("")
    lines += ["| layout | σ | seed | n × p | signal R² | ARI | preprint (σ mean) | above | all-zero W | selected (true / all true) | "
              "λ, α, β selected | CV loss / intercept-only | search wall s | load |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['layout']} | {r['sigma']:g} | {r.get('seed', 0)} | | | FAILED | {PREPRINT_MEAN[r['sigma']]:.2f} | NO | | | "
                         f"{r['error'][:80]} | | | {_fmt(r.get('loadavg_before', [None])[0], '.1f')} |")
            continue
        b = r.get("best", {})
        params = ", ".join(_fmt(b.get(k)) for k in ("lambda_smooth", "alpha", "beta"))
        load = r.get("loadavg_before", [None])[0]
        lines.append(
            f"| {r['layout']} | {r['sigma']:g} | {r.get('seed', 0)} | {r['n_spots']} × {r['n_features']} | {r['signal_r2']:.2f} | {r['ari']:.3f} | "
            f"{PREPRINT_MEAN[r['sigma']]:.2f} | {'yes' if above_preprint(r) else 'NO'} | {'YES' if r['all_zero'] else 'no'} | "
            f"{r['n_selected']} ({r['n_true_selected']} / {r['n_true_support']}) | {params} | "
            f"{_fmt(r.get('cv_ratio_to_null'), '.3f')} | {r['search_wall_s']:.0f} | {_fmt(load, '.1f')} |"
            + ("" if r.get("defaults", True) else " NOT DEFAULTS |")
        )
    failed = [r for r in rows if "error" in r]
    done = [r for r in rows if "error" not in r]
    if rows:
        lines.append("")
    seeds = sorted({r.get("seed", 0) for r in rows})
    for seed in seeds:
        lines += _summary([r for r in done if r.get("seed", 0) == seed], [r for r in rows if r.get("seed", 0) == seed],
                          f"Seed {seed}: " if len(seeds) > 1 else "")
    if len(seeds) > 1 and done:
        per_seed = [np.mean([r["ari"] for r in done if r.get("seed", 0) == s]) for s in seeds if any(r.get("seed", 0) == s for r in done)]
        lines.append(f"Over {len(per_seed)} seeds: mean ARI {np.mean(per_seed):.3f} (sd {np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0:.3f} "
                     f"between the seeds' means); " + _summary(done, rows, "all cells: ")[0])
    if failed:
        lines.append(f"Failed cells (counted as not above the preprint): {len(failed)}/{len(rows)}: "
                     + "; ".join(f"{r['layout']} σ={r['sigma']:g}: {r['error']}" for r in failed) + ".")
        dropped = sorted({k for r in done for k in r.get("dropped_keys", [])})
        if dropped:
            lines.append(f"Keys of the selected parameters that S3R did not accept (not passed to the final fit): {', '.join(dropped)}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("grid")
    g.add_argument("--layouts", nargs="+", default=list(LAYOUTS))
    g.add_argument("--sigmas", nargs="+", type=float, default=list(SIGMAS))
    g.add_argument("--seed", "--seeds", dest="seeds", type=int, nargs="+", default=[0],
                   help="simulation seeds (default 0); one grid per seed, the table gives each seed's mean and theirs: "
                        "the grid's mean moves by ~0.05 between seeds (benchmarks/README.md, session 37)")
    g.add_argument("--workers", type=int, default=1, help="folds at once (default 1: the machine is shared)")
    g.add_argument("--config", help="tuning settings as JSON, for debugging only (the grid's figures use none)")
    g.add_argument("--out", default=str(OUT / "realistic_grid.jsonl"))
    g.add_argument("--fresh", action="store_true", help="start the file anew instead of resuming")
    g.add_argument("--keep", help="keep each cell's tuning files and final map (CELL_W.npz) under this folder (to study selection rules and the domain step offline)")
    g.add_argument("--keep-states", action="store_true", help="with --keep, keep the fold maps too (round_*/fold_*.npz, for benchmarks/fold_maps.py; ~1 MB per trial and fold at 1,000 × 100)")
    t = sub.add_parser("table")
    t.add_argument("--out", default=str(OUT / "realistic_grid.jsonl"))
    args = parser.parse_args()
    if args.cmd == "grid":
        cmd_grid(args)
    else:
        print(table(args.out))


if __name__ == "__main__":
    main()
