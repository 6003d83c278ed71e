"""Does a fold scheme report effects that are not there? Spatially autocorrelated targets unrelated to the features.

On the real DLPFC 151675 section (3,460 spots, the nine oligodendrocyte regulators as features, workflow
preprocessing), the target is replaced by a smooth random field on the spot coordinates plus independent noise,
drawn without looking at the features: a spatially varying coefficient model can still mimic such a field with
W(s)·x(s) wherever a feature is non-zero, which is GWR's classic false positive. The question for issue 17's
default fold scheme: how often does the tuned model's verdict say "effect found" on these nulls under spatial
blocks and under random folds (defaults otherwise)? And, as a positive control, the real MBP target.

    python benchmarks/null_fields.py [--fields 6] [--schemes blocks random] [--out benchmarks/out/null_fields.jsonl]

Field: random Fourier features of a squared-exponential kernel, length scale ``--length`` (µm-free: in units of
the median nearest-neighbour spacing), sd 1; noise sd 1; intercept 2. Needs ../shared/data/real/dlpfc_151675.h5ad.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench_common import provenance
from dlpfc_real import DATA, REGULATORS, prepare

HERE = Path(__file__).resolve().parent


def smooth_field(coords, length, seed, n_features=500):
    """A stationary Gaussian-like field (random Fourier features), standardised to sd 1."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    spacing = float(np.median(cKDTree(coords).query(coords, k=2)[0][:, 1]))
    omega = rng.standard_normal((n_features, 2)) / (length * spacing)
    phase = rng.uniform(0, 2 * np.pi, n_features)
    f = np.cos(coords @ omega.T + phase).sum(axis=1)
    return (f - f.mean()) / f.std()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fields", type=int, default=6)
    p.add_argument("--lengths", type=float, nargs="+", default=[5.0, 15.0])
    p.add_argument("--schemes", nargs="+", default=["blocks", "random"])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--mbp", action="store_true", help="also the real MBP target (positive control)")
    p.add_argument("--out", default=str(HERE / "out" / "null_fields.jsonl"))
    args = p.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA}: not found; this benchmark needs the shared real data")
    from s3r.tune import run_search

    prepared = prepare(["MBP"], REGULATORS)
    base = prepared.regression_data("MBP")
    cases = []
    for i in range(args.fields):
        length = args.lengths[i % len(args.lengths)]
        noise = np.random.default_rng(1000 + i).standard_normal(base.n_spots)
        y = 2.0 + smooth_field(base.coords, length, seed=i) + noise
        cases.append((f"field{i}_len{length:g}", replace(base, y=y)))
    if args.mbp:
        cases.append(("MBP", base))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        for name, data in cases:
            for scheme in args.schemes:
                start = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    best = run_search(data, {"fold_scheme": scheme}, tmp, workers=args.workers)
                rec = {"case": name, "fold_scheme": scheme, "effect_found": best["effect_found"],
                       "ratio_to_null": best["best_cv_loss"] / best["null_cv_loss"],
                       "chosen_ratio": best["cv_loss"] / best["null_cv_loss"], "map_pieces": best["map_pieces"],
                       "params": {k: best[k] for k in ("lambda_smooth", "alpha", "beta")},
                       "seconds": time.perf_counter() - start, "provenance": provenance()}
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                print(json.dumps({k: v for k, v in rec.items() if k != "provenance"}), flush=True)


if __name__ == "__main__":
    main()
