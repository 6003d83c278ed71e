"""Deconvolution on real truth: MERFISH hypothalamus pseudo-spots and the DLPFC 151675 layers.

- ``merfish``: cells of one z-plane (0.21) of ``hypothalamus_merfish.h5ad`` binned into 50/100/200 µm squares
  (true proportions = class fractions of each square's cells; 8 classes: numbered subclasses merged, Ambiguous
  and Ependymal cells dropped), the reference = mean expression per cell of each class on the other plane
  (0.26). Compared: per-spot NNLS on the reference means (the baseline), s3r proportions at λ = 0, and s3r
  with λ chosen by held-out genes (the default).
- ``dlpfc``: ``deconv/dlpfc_151675_layers`` (layers as types, reference from the adjacent section); ARI and
  accuracy of the dominant type against the manual layers.

Each fit runs in a fresh subprocess so peak RSS is its own. Needs ``../shared/data/real`` (not shipped).

    python benchmarks/deconv_real.py merfish --sizes 50 100 200
    python benchmarks/deconv_real.py dlpfc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SPOT_PLANE, REFERENCE_PLANE = 0.21, 0.26


def merfish_inputs(size: float):
    import anndata

    from s3r.deconv.simulate import pseudo_spots

    adata = anndata.read_h5ad(REAL / "hypothalamus_merfish.h5ad")
    classes = adata.obs["Cell_class"].astype(str).str.replace(r" \d+$", "", regex=True).to_numpy()
    keep = ~np.isin(classes, ["Ambiguous", "Ependymal"])
    z = adata.obs["z"].to_numpy()
    X = adata.X.tocsr()
    types = sorted(set(classes[keep]))
    ref_cells = keep & (z == REFERENCE_PLANE)
    reference = np.stack([np.asarray(X[ref_cells & (classes == t)].mean(axis=0)).ravel() for t in types])
    spot_cells = keep & (z == SPOT_PLANE)
    spots = pseudo_spots(adata.obsm["spatial"][spot_cells], classes[spot_cells], X[spot_cells], size, types=types)
    return spots, reference, types, list(map(str, adata.var_names))


def nnls_baseline(counts, reference):
    from scipy.optimize import nnls

    P = np.array([nnls(reference.T, y)[0] for y in counts])
    return P / np.maximum(P.sum(axis=1, keepdims=True), 1e-300)


def per_type_r(estimate, truth):
    return [float(np.corrcoef(estimate[:, k], truth[:, k])[0, 1]) for k in range(truth.shape[1])]


def run_one(task: str, size: float, method: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from s3r.deconv import CellTypeProportions

    if task == "merfish":
        spots, reference, types, genes = merfish_inputs(size)
        counts, coords, truth = spots.counts, spots.coords, spots.fractions
    else:
        import pandas as pd

        folder = REAL / "deconv" / "dlpfc_151675_layers"
        counts_df = pd.read_csv(folder / "counts.csv", index_col=0)
        reference_df = pd.read_csv(folder / "reference.csv", index_col=0)
        coords = pd.read_csv(folder / "coords.csv", index_col=0).loc[counts_df.index].to_numpy()
        layers = pd.read_csv(folder / "truth_labels.csv", index_col=0).reindex(counts_df.index)["layer"]
        counts, reference, types = counts_df, reference_df, list(reference_df.index)
    wall, cpu = time.perf_counter(), time.process_time()
    extra = {}
    if method == "nnls":
        shared = reference if task == "merfish" else reference[counts.columns].to_numpy()
        P = nnls_baseline(np.asarray(counts, dtype=np.float64), np.asarray(shared, dtype=np.float64))
    else:
        lam = 0.0 if method == "lambda0" else "auto"
        model = CellTypeProportions(lambda_smooth=lam, seed=0).fit(counts, reference, coords)
        P = model.proportions_
        choice = model.summary_of_choice()
        extra = {
            "lambda": model.lambda_,
            "evidence": {f"{row['lambda']:g}": round(float(row.get("mean", float("nan"))), 5) for row in choice.to_dict("records")},
            "converged": model.certificate_["converged"],
            "iterations": model.certificate_["iterations"],
        }
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    row = {"task": task, "size": size, "method": method, "threads": threads, "seconds": round(wall, 2),
           "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "n_spots": int(P.shape[0]), **extra}
    if task == "merfish":
        row["rmse"] = round(float(np.sqrt(np.mean((P - truth) ** 2))), 4)
        row["per_type_r"] = [round(r, 3) for r in per_type_r(P, truth)]
        row["cells_per_spot_median"] = float(np.median(spots.n_cells))
    else:
        from sklearn.metrics import adjusted_rand_score

        known = layers.notna().to_numpy()
        predicted = np.asarray(types, dtype=object)[P.argmax(axis=1)]
        row["ari"] = round(float(adjusted_rand_score(layers[known], predicted[known])), 3)
        row["accuracy"] = round(float(np.mean(layers[known].to_numpy() == predicted[known])), 3)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("merfish", "dlpfc"))
    parser.add_argument("--sizes", type=float, nargs="+", default=[50, 100, 200])
    parser.add_argument("--methods", nargs="+", default=["nnls", "lambda0", "auto"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.task, float(args.one[0]), args.one[1], args.threads)))
        return 0
    sizes = args.sizes if args.task == "merfish" else [0]
    rows = []
    for size in sizes:
        for method in args.methods:
            done = subprocess.run([sys.executable, __file__, args.task, "--one", str(size), method, "--threads", str(args.threads)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    machine = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
               "load_average_at_end": os.getloadavg()}
    out = Path(args.out or f"benchmarks/out/deconv_real_{args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
