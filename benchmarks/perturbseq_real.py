"""The perturb-seq mode on a real screen, end to end (issue 14): Papalexi et al. 2021 ECCITE-seq (THP-1, 26
targeted genes, 20,729 cells × 299 genes), all genes as responses, non-targeting controls as baseline,
replicate and log library size as unpenalised covariates, CV-chosen penalty per gene; then programmes,
modules, per-cell scores, tests, enrichment table and every figure — the workflow's own calls.

    python benchmarks/perturbseq_real.py --family gaussian --out benchmarks/out/papalexi_gaussian [--h5ad PATH]

Prints wall times per stage and what the IFN-γ pathway knock-outs (IFNGR1, IFNGR2, JAK2, STAT1) do.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "papalexi_eccite.h5ad"
IFNG = ["IFNGR1", "IFNGR2", "JAK2", "STAT1"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--h5ad", default=str(REAL))
    ap.add_argument("--family", default="gaussian")
    ap.add_argument("--cv", type=int, default=3)
    ap.add_argument("--n-alphas", type=int, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    from s3r.workflow.jobs import OUTPUT_TABLES, plot_screen, run_screen

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = {"h5ad": args.h5ad, "perturbation_key": "perturbation", "control": "control", "covariates": ["bio_rep", "log1p_total_counts"],
            "layer": None, "genes": None, "s_genes": None, "g2m_genes": None, "gmt": None}
    settings = {"family": args.family, "l1_ratio": 0.5, "alpha": None, "n_alphas": args.n_alphas, "cv": args.cv, "n_top_genes": 299,
                "n_programmes": None, "programme_threshold": 0.7, "seed": 0}
    tables = {k: out / (f"{k}.tsv" if k != "summary" else "perturbseq.json") for k in OUTPUT_TABLES}
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    run_screen(spec, settings, outputs=tables, device="cpu")
    t1 = time.perf_counter()
    figs = {k: out / f"{k[:-4]}.png" for k in ("coefficients_png", "scores_png", "shifts_png", "dotplot_png", "alpha_png", "enrichment_png")}
    plot_screen(**{k: tables[k] for k in ("coefficients", "programmes", "modules", "programme_scores", "programme_tests", "alpha_performance",
                                          "enrichment")}, **figs, title=f"papalexi {args.family}")
    t2 = time.perf_counter()
    summary = json.loads(tables["summary"].read_text())
    W = pd.read_csv(tables["coefficients"], sep="\t", index_col=0)
    tests = pd.read_csv(tables["programme_tests"], sep="\t")
    progs = pd.read_csv(tables["programmes"], sep="\t", index_col=0)["programme"]
    mods = pd.read_csv(tables["modules"], sep="\t", index_col=0)["module"]
    bio = {}
    for p in IFNG:
        row = W.loc[p]
        bio[p] = {"most_lowered": row.nsmallest(6).round(2).to_dict(), "module": int(mods[p])}
    # the programme holding the interferon-response genes the pathway knock-outs lower most
    down = W.loc[IFNG].mean().nsmallest(5).index
    prog = str(progs[down].mode().iloc[0])
    shift = tests[tests["programme"] == prog].set_index("perturbation").sort_values("mean_difference")
    result = {
        "family": args.family, "fit_and_analysis_seconds": t1 - t0, "figures_seconds": t2 - t1, "total_seconds": t2 - t0,
        "load_before": load0, "load_after": os.getloadavg(), "threads": args.threads, "fit_report": summary["report"],
        "n_cells": summary["n_cells"], "programme_sizes": summary["programme_sizes"], "module_sizes": summary["module_sizes"],
        "ifng_pathway": bio, "ifn_programme": prog, "ifn_programme_genes": sorted(progs.index[progs == prog]),
        "ifn_programme_shift": shift[["mean_difference", "p_adj"]].head(8).to_dict("index"),
        "modules": {int(m): sorted(mods.index[mods == m]) for m in sorted(mods.unique())},
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: result[k] for k in ("family", "total_seconds", "fit_and_analysis_seconds", "figures_seconds", "load_before",
                                             "load_after", "programme_sizes", "ifn_programme", "ifn_programme_genes", "modules")}, default=float))
    for p, v in bio.items():
        print(p, v)
    print(shift[["mean_difference", "p_adj"]].head(8))


if __name__ == "__main__":
    main()
