"""Benchmark on a real Visium section: DLPFC 151675, MBP explained by oligodendrocyte regulators, workflow defaults.

The sample goes through the workflow's own preprocessing (library-size normalisation + log1p, features scaled)
and the default tuning (s3r.tune defaults: 30 trials, 3 rounds, 5 spatial-block folds, ranges relative to the
data's natural scales); then the final fit at the selected λ, α, β. Reported: CV loss against the intercept-only
model, the selected regulators, their mean coefficient in white matter against the cortical layers, and maps.

    python benchmarks/dlpfc_real.py mbp [--out benchmarks/out/dlpfc]          # the MBP analysis and its maps
    python benchmarks/dlpfc_real.py genes [--n 50] [--out ...]               # defaults complete for 50 random genes
    python benchmarks/dlpfc_real.py workflow [--n 50] [--out ...]            # the same 50 genes as targets of one
                                                                             # sample, tuned by the workflow (chunks)

Needs ../shared/data/real/dlpfc_151675.h5ad (not part of the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench_common import provenance

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "real" / "dlpfc_151675.h5ad"
REGULATORS = ["MYRF", "OLIG2", "SOX10", "OLIG1", "NKX6-2", "ZNF488", "SOX8", "ST18", "QKI"]


def prepare(targets, features):
    from s3r.preprocess import prepare_h5ad

    return prepare_h5ad(DATA, targets=targets, features=features)


def tune_and_fit(prepared, target, out: Path, config=None):
    from s3r.estimator import S3R
    from s3r.tune import run_search

    data = prepared.regression_data(target)
    start = time.perf_counter()
    best = run_search(data, config, out / target / "tune")
    tune_s = time.perf_counter() - start
    model_keys = ("smooth", "graph", "k", "radius", "max_edge_length", "compat", "scaling", "mask_zero_response", "fit_intercept",
                  "spatial_intercept", "family", "theta")
    model = S3R(lambda_smooth=best["lambda_smooth"], alpha=best["alpha"], beta=best["beta"],
                **{k: best["model"][k] for k in model_keys if k in best["model"]}, device="cpu")
    start = time.perf_counter()
    model.fit(data.X, data.y, data.coords)
    return data, best, model, tune_s, time.perf_counter() - start


def run_mbp(args):
    import anndata
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from s3r.report.style import colour_limit

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(["MBP"], REGULATORS)
    data, best, model, tune_s, fit_s = tune_and_fit(prepared, "MBP", out, json.loads(args.config) if args.config else None)
    layers = anndata.read_h5ad(DATA, backed="r").obs["layer"].astype(str).reindex(data.spot_ids).to_numpy()
    wm = layers == "WM"
    cortex = np.isin(layers, ["L1", "L2", "L3", "L4", "L5", "L6"])
    rows = []
    for j, name in enumerate(data.feature_names):
        w = model.coef_[:, j]
        rows.append({"feature": name, "selected": bool(np.any(w != 0)), "mean_wm": float(w[wm].mean()), "mean_cortex": float(w[cortex].mean()),
                     "nonzero_share": float(np.mean(w != 0))})
    result = {
        "target": "MBP", "n_spots": data.n_spots, "features": data.feature_names,
        "cv_loss": best["cv_loss"], "cv_se": best["cv_se"], "null_cv_loss": best["null_cv_loss"], "trend_cv_loss": best["trend_cv_loss"],
        "model": best["model"],
        "ratio_to_null": best["cv_loss"] / best["null_cv_loss"], "effect_found": best["effect_found"], "verdict": best["verdict"],
        "warnings": best["warnings"], "params": {k: best[k] for k in ("lambda_smooth", "alpha", "beta")}, "search": best["search"],
        "scales": best["scales"], "tune_seconds": tune_s, "fit_seconds": fit_s, "fit_converged": model.report_["converged"],
        "fit_iterations": model.report_["iterations"], "r2_in_sample": model.score(data.X, data.y), "intercept": model.intercept_,
        "coefficients_by_region": rows, "provenance": provenance(),
    }
    (out / "mbp.json").write_text(json.dumps(result, indent=2))
    order = [r["feature"] for r in sorted(rows, key=lambda r: -abs(r["mean_wm"]) - abs(r["mean_cortex"]))][:6]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8))
    xy = data.coords
    panels = [("MBP (log-normalised)", data.y, "viridis"), ("manual layers: WM", wm.astype(float), "Greys")]
    panels += [(f"W[{f}]", model.coef_[:, data.feature_names.index(f)], "RdBu_r") for f in order]
    if getattr(model, "spatial_intercept_", None) is not None:  # the location-only part, where it was fitted
        panels[-1] = ("spatial intercept", model.spatial_intercept_, "RdBu_r")
    for ax, (title, values, cmap) in zip(axes.ravel(), panels):
        lim, beyond = colour_limit(xy, values)  # the report's scale: isolated spots drawn at its ends, not setting it
        lim = lim or 1.0
        kw = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {"vmin": -0.3, "vmax": 1.0} if cmap == "Greys" else {}  # cortex light grey, not white
        sc = ax.scatter(xy[:, 0], -xy[:, 1], c=values, s=4, cmap=cmap, **kw)
        ax.set_title(title + (f"\n{beyond} isolated spots beyond ±{lim:.2g}" if cmap == "RdBu_r" and beyond else ""))
        ax.set_aspect("equal")
        ax.set_axis_off()
        fig.colorbar(sc, ax=ax, shrink=0.7, extend="both" if cmap == "RdBu_r" and beyond else "neither")
    fig.suptitle(f"DLPFC 151675, MBP ~ oligodendrocyte regulators (CV loss {best['cv_loss']:.3f} vs intercept {best['null_cv_loss']:.3f})")
    fig.tight_layout()
    fig.savefig(out / "mbp_maps.png", dpi=80)
    print(json.dumps({k: v for k, v in result.items() if k not in ("provenance",)}, indent=1))


def draw_genes(n: int) -> list[str]:
    """The benchmark's random targets: n genes of the section other than the regulators (seed 0)."""
    import anndata

    genes = [str(g) for g in anndata.read_h5ad(DATA, backed="r").var_names]
    rng = np.random.default_rng(0)
    pool = [g for g in genes if g not in REGULATORS]
    return sorted(rng.choice(pool, size=n, replace=False).tolist())


def run_genes(args):
    out = Path(args.out)
    chosen = draw_genes(args.n)
    prepared = prepare(chosen, REGULATORS)
    if args.skip:
        chosen = chosen[args.skip:]
    lines = []
    for gene in chosen:
        record = {"target": gene}
        try:
            _, best, model, tune_s, fit_s = tune_and_fit(prepared, gene, out / "genes")
            record.update(ok=True, ratio_to_null=best["cv_loss"] / best["null_cv_loss"], effect_found=best["effect_found"],
                          trend_ratio=None if best.get("trend_cv_loss") is None else best["best_cv_loss"] / best["trend_cv_loss"],
                          verdict=best["verdict"], selected=model.report_["selected_features"], seconds=tune_s + fit_s)
        except Exception as err:  # the point of this benchmark: count failures, keep going
            record.update(ok=False, error=f"{type(err).__name__}: {err}", trace=traceback.format_exc())
        print(json.dumps({k: v for k, v in record.items() if k != "trace"}), flush=True)
        lines.append(record)
        with (out / "genes.jsonl").open("a") as fh:  # one line per gene as it ends: a stopped run keeps its genes
            fh.write(json.dumps(record) + "\n")
    ok = sum(r["ok"] for r in lines)
    print(f"{ok}/{len(lines)} completed; effect found for {sum(bool(r.get('effect_found')) for r in lines)}")


def run_workflow(args):
    """The drawn genes as the targets of one sample, through the workflow with its default tuning (chunks of
    targets, one batched solve per fold job), up to each target's selected parameters; one record per gene."""
    import subprocess

    out = Path(args.out).resolve()
    work = out / "workflow"
    (work / "config").mkdir(parents=True, exist_ok=True)
    chosen = draw_genes(args.n)
    (work / "config" / "samples.tsv").write_text(
        "sample\th5ad\ttargets\tfeatures\n" f"dlpfc_151675\t{DATA}\t{','.join(chosen)}\t{','.join(REGULATORS)}\n")
    (work / "config" / "config.yaml").write_text(  # tuning on with its default settings; no demo, no perturb-seq
        "samples: config/samples.tsv\ntune:\n  enabled: true\nperturbseq:\n  enabled: false\n")
    snakefile = HERE.parent / "workflow" / "Snakefile"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(work), "--cores", str(args.cores),
           "--resources", "gpu=0", "--until", "tune_select", "--keep-going", "--quiet", "rules"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out / "workflow.log").write_text(proc.stdout + proc.stderr)
    records = []
    for gene in chosen:
        found = list((work / "results" / "tune" / "dlpfc_151675").glob(f"*/targets/{gene}/best_params.json"))
        record = {"target": gene, "ok": bool(found)}
        if found:
            from s3r.artifacts import read_params_file

            best = read_params_file(found[0])
            tuning = best.get("tuning") or {}

            def ratio(a, b):
                return tuning[a] / tuning[b] if tuning.get(a) is not None and tuning.get(b) else None

            record.update(effect_found=tuning.get("effect_found"), verdict=tuning.get("verdict"),
                          params=best.get("params"), ratio_to_null=ratio("cv_loss", "null_cv_loss"),
                          trend_ratio=ratio("best_cv_loss", "trend_cv_loss"))
        records.append(record)
    summary = {"genes": len(chosen), "completed": sum(r["ok"] for r in records), "snakemake_exit": proc.returncode,
               "wall_s": wall, "effect_found": sum(bool(r.get("effect_found")) for r in records), "cores": args.cores,
               "provenance": provenance(), "records": records}
    (out / "workflow_genes.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "records"}, indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("mbp", "genes", "workflow"))
    p.add_argument("--cores", type=int, default=2, help="workflow: snakemake --cores")
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--skip", type=int, default=0, help="genes: continue after the first SKIP of the drawn genes")
    p.add_argument("--out", default=str(HERE / "out" / "dlpfc"))
    p.add_argument("--config", help="mbp: tuning settings as JSON, for comparisons only (the target's figure uses none)")
    args = p.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA}: not found; this benchmark needs the shared real data")
    {"mbp": run_mbp, "genes": run_genes, "workflow": run_workflow}[args.what](args)


if __name__ == "__main__":
    main()
