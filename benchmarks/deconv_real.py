"""Deconvolution on real truth: MERFISH hypothalamus pseudo-spots and the DLPFC 151675 layers.

- ``merfish``: cells of one z-plane (0.21) of ``hypothalamus_merfish.h5ad`` binned into 50/100/200 µm squares
  (true proportions = class fractions of each square's cells; 8 classes: numbered subclasses merged, Ambiguous
  and Ependymal cells dropped), the reference = mean expression per cell of each class on the other plane
  (0.26). Compared: per-spot NNLS on the reference means (the baseline), s3r proportions at λ = 0, and s3r
  with λ chosen by held-out genes (the default).
- ``dlpfc``: ``deconv/dlpfc_151675_layers`` (layers as types, reference from the adjacent section); ARI and
  accuracy of the dominant type against the manual layers.
- ``lymph``: ``deconv/lymph_node_visium`` (1,000 Visium spots, 11 types from spacexr's single-cell reference); no
  truth, so what a histologist would look for: B and T cells in separate zones (their proportions' correlation
  over spots), compact B follicles (Moran's I of each map on the spot graph, and the B-dominant patches), and
  maps of B, T_CD4, T_CD8, B_Plasma written to ``benchmarks/out/lymph_<method>.png``.

Each fit runs in a fresh subprocess so peak RSS is its own. Needs ``../shared/data/real`` (not shipped).

    python benchmarks/deconv_real.py merfish --sizes 50 100 200
    python benchmarks/deconv_real.py dlpfc
    python benchmarks/deconv_real.py lymph
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


def morans_i(values: np.ndarray, edges: np.ndarray) -> float:
    """Moran's I on an unweighted graph: > 0 when neighbours are alike (a patchy map), ≈ 0 for noise."""
    z = values - values.mean()
    n, m = len(values), len(edges)
    return float(n / (2 * m) * 2 * (z[edges[:, 0]] * z[edges[:, 1]]).sum() / (z * z).sum())


def lymph_structure(P: np.ndarray, coords: np.ndarray, types: list, method: str) -> dict:
    """Spatial organisation of a lymph node's maps, and a figure of B, T and plasma cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.sparse.csgraph import connected_components
    import scipy.sparse as sp

    from s3r.graph import build_graph

    edges = build_graph(coords, "delaunay").edges
    lengths = np.linalg.norm(coords[edges[:, 0]] - coords[edges[:, 1]], axis=1)
    edges = edges[lengths <= 1.5 * np.median(lengths)]  # the spot lattice, not hull-spanning Delaunay edges
    col = {t: types.index(t) for t in types}
    dominant = P.argmax(axis=1)
    b_spots = np.flatnonzero(dominant == col["B"])
    inside = np.isin(edges, b_spots).all(axis=1)
    sub = edges[inside]
    label = {s: i for i, s in enumerate(b_spots)}
    adjacency = sp.csr_matrix((np.ones(len(sub)), ([label[a] for a in sub[:, 0]], [label[b] for b in sub[:, 1]])),
                              shape=(len(b_spots), len(b_spots)))
    _, patch = connected_components(adjacency, directed=False)
    sizes = np.bincount(patch) if len(b_spots) else np.zeros(0, dtype=int)
    shown = [t for t in ("B", "T_CD4", "T_CD8", "B_Plasma") if t in col]
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(4 * (len(shown) + 1), 4))
    for ax, t in zip(axes, shown):
        ax.scatter(coords[:, 0], coords[:, 1], c=P[:, col[t]], s=6, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{t} ({method})"); ax.set_aspect("equal"); ax.invert_yaxis(); ax.set_xticks([]); ax.set_yticks([])
    axes[-1].scatter(coords[:, 0], coords[:, 1], c=dominant, s=6, cmap="tab20", vmin=0, vmax=19)
    axes[-1].set_title("dominant type"); axes[-1].set_aspect("equal"); axes[-1].invert_yaxis()
    axes[-1].set_xticks([]); axes[-1].set_yticks([])
    out = Path(__file__).resolve().parent / "out" / f"lymph_{method}.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return {
        "mean_proportion": {t: round(float(P[:, col[t]].mean()), 3) for t in types},
        "dominant_counts": {t: int((dominant == col[t]).sum()) for t in types},
        "corr_B_T_CD4": round(float(np.corrcoef(P[:, col["B"]], P[:, col["T_CD4"]])[0, 1]), 3),
        "morans_i": {t: round(morans_i(P[:, col[t]], edges), 3) for t in types if P[:, col[t]].std() > 0},
        "b_patches_of_3_or_more": int((sizes >= 3).sum()),
        "b_patch_sizes": sorted(map(int, sizes[sizes >= 3]), reverse=True),
        "figure": str(out),
    }


def run_one(task: str, size: float, method: str, threads: int, verbose: bool = False, options: dict | None = None) -> dict:
    import torch

    torch.set_num_threads(threads)
    from s3r.deconv import CellTypeProportions

    if task == "merfish":
        spots, reference, types, genes = merfish_inputs(size)
        counts, coords, truth = spots.counts, spots.coords, spots.fractions
    elif task == "lymph":
        import pandas as pd

        folder = REAL / "deconv" / "lymph_node_visium"
        counts = pd.read_csv(folder / "counts.csv", index_col=0)
        reference = pd.read_csv(folder / "reference.csv", index_col=0)
        coords = pd.read_csv(folder / "coords.csv", index_col=0).loc[counts.index].to_numpy()
        types = list(reference.index)
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
        shared = reference if task == "merfish" else reference[[g for g in counts.columns if g in reference.columns]].to_numpy()
        counts = counts if task == "merfish" else counts[[g for g in counts.columns if g in reference.columns]]
        P = nnls_baseline(np.asarray(counts, dtype=np.float64), np.asarray(shared, dtype=np.float64))
    else:
        lam = 0.0 if method == "lambda0" else "auto"
        model = CellTypeProportions(lambda_smooth=lam, seed=0, verbose=verbose, **(options or {})).fit(counts, reference, coords)
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
    elif task == "lymph":
        row.update(lymph_structure(P, coords, types, method))
    else:
        from sklearn.metrics import adjusted_rand_score

        known = layers.notna().to_numpy()
        predicted = np.asarray(types, dtype=object)[P.argmax(axis=1)]
        row["ari"] = round(float(adjusted_rand_score(layers[known], predicted[known])), 3)
        row["accuracy"] = round(float(np.mean(layers[known].to_numpy() == predicted[known])), 3)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=("merfish", "dlpfc", "lymph"))
    parser.add_argument("--sizes", type=float, nargs="+", default=[50, 100, 200])
    parser.add_argument("--methods", nargs="+", default=["nnls", "lambda0", "auto"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--verbose", action="store_true", help="with --one: the fit's progress (λ path, folds) on stdout")
    parser.add_argument("--options", default=None, help='model options as JSON, e.g. \'{"cv_max_spots": 2000}\' (a window for the λ path)')
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        options = json.loads(args.options) if args.options else None
        print(json.dumps({**run_one(args.task, float(args.one[0]), args.one[1], args.threads, args.verbose, options), "options": options}))
        return 0
    sizes = args.sizes if args.task == "merfish" else [0]
    rows = []
    for size in sizes:
        for method in args.methods:
            command = [sys.executable, __file__, args.task, "--one", str(size), method, "--threads", str(args.threads)]
            done = subprocess.run(command + (["--options", args.options] if args.options else []),
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    machine = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
               "load_average_at_end": os.getloadavg()}
    out = Path(args.out or Path(__file__).resolve().parent / "out" / f"deconv_real_{args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
