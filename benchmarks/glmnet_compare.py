"""s3r's GLM path against R glmnet on the real screen (issue 14): speed and objective, gaussian and poisson.

    python benchmarks/glmnet_compare.py [--families gaussian,poisson] [--genes N] [--agree-genes 40] [--threads 2]
                                        [--repeats R] [--out FILE]

Design: the perturb-seq mode's own (``glmnet_peer.screen_design``): 16,192 cells, 25 perturbations one-hot against
control, replicate and log library size unpenalised, all 299 genes (or the first N), l1_ratio 0.5, a 20-point path
from λ_max to 1e-3 λ_max, no standardisation. Speed: s3r's whole path (``GLMNet.fit``, all genes in one call)
against glmnet's own 20-λ path per gene in one R loop (time inside R, data loading excluded), run one after the
other in this process so both see the same load; with ``--repeats R`` the pair is run R times, alternating, and the
median of the R per-pair ratios is reported (on a shared machine the load moves within a run). Agreement (on the first ``--agree-genes`` genes: glmnet at thresh
1e-14 is slow): glmnet refitted at s3r's λ, both scored by one formula; the largest (s3r − glmnet)/|glmnet| over genes × λ.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from glmnet_peer import objective, run_glmnet, screen_design


def compare(family: str, genes, threads: int, agree: int, repeats: int = 1) -> dict:
    import torch

    from s3r.glm import GLMNet

    torch.set_num_threads(threads)
    X, Y, off, pf = screen_design(family=family, genes=genes)
    load0 = os.getloadavg()[0]
    pairs = []
    for _ in range(repeats):
        t = time.perf_counter()
        m = GLMNet(family, l1_ratio=0.5, n_alphas=20, eps=1e-3, penalty_factor=pf, standardize=False, tol=1e-6, device="cpu").fit(X, Y, offset=off)
        ours = time.perf_counter() - t
        _, _, theirs = run_glmnet(X, Y, off, pf, family)
        pairs.append((ours, theirs, os.getloadavg()[0]))
    load1 = os.getloadavg()[0]
    a = slice(0, agree)
    b0, coef, _ = run_glmnet(X, Y[:, a], off, pf, family, lambdas=m.alphas_[:, a])
    f_ours = objective(X, Y[:, a], off, pf, family, m.alphas_[:, a], m.intercept_path_[:, a], m.coef_path_[:, a])
    f_glmnet = objective(X, Y[:, a], off, pf, family, m.alphas_[:, a], b0, coef)
    rel = (f_ours - f_glmnet) / np.abs(f_glmnet)
    ratios = [b / a for a, b, _ in pairs]
    return {"family": family, "genes": int(Y.shape[1]), "cells": int(Y.shape[0]), "s3r_seconds": [a for a, _, _ in pairs],
            "glmnet_seconds": [b for _, b, _ in pairs], "speedups": ratios, "speedup": float(np.median(ratios)),
            "load_1min": [load0] + [round(x, 2) for _, _, x in pairs] + [load1], "agreement_genes": int(min(agree, Y.shape[1])), "converged": m.report_["converged"],
            "max_relative_objective_gap": float(rel.max()), "min_relative_objective_gap": float(rel.min())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--families", default="gaussian,poisson")
    ap.add_argument("--genes", type=int)
    ap.add_argument("--agree-genes", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="alternating s3r/glmnet pairs; the median ratio is reported")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = [compare(f, args.genes, args.threads, args.agree_genes, args.repeats) for f in args.families.split(",")]
    for r in rows:
        print(json.dumps(r))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
