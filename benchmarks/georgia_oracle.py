"""Benchmark: what the best *fixed* penalties give on Georgia (issue 17) — the ceiling tuning can reach.

Same data, standardisation and spatially blocked outer folds as ``georgia_gwr.py``. For one model form
(smooth, spatial intercept, graph k) and each point of a grid of penalties relative to the training
counties' natural scales (``Problem.natural_scales``, as the tuning's default search uses them), one fit per
outer fold on all 159 counties with the held-out ones at observation weight 0 (as ``georgia_gwr.py`` fits
the tuned model), then the pooled out-of-fold RMSE. The best grid point is an oracle (chosen on the
held-out counties): a ceiling for tuning, never a result to compare with GWR's honestly chosen bandwidth.

    python benchmarks/georgia_oracle.py --smooth quadratic --spatial-intercept --k 15 \
        [--lambdas 1e-4 3e-4 1e-3 ...] [--ab 1e-4 ...]        # JSON lines on stdout, one per grid point
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

from georgia_gwr import FEATURES, FOLD_SCHEME, FOLD_SEED, N_FOLDS, TARGET, load_georgia, rmse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smooth", default="quadratic", choices=("tv", "quadratic", "graph_l1"))
    parser.add_argument("--spatial-intercept", action="store_true")
    parser.add_argument("--k", type=int, default=7)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0])
    parser.add_argument("--ab", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2], help="α and β relative to their scales")
    args = parser.parse_args()

    from s3r import S3R
    from s3r.cv import make_folds
    from s3r.io import RegressionData
    from s3r.tune.evaluate import make_problem
    from s3r.tune.space import resolve_config

    warnings.simplefilter("ignore")
    y, X, coords, ids, _ = load_georgia()
    folds = make_folds(coords, N_FOLDS, FOLD_SCHEME, seed=FOLD_SEED)
    config = resolve_config({"model": {"smooth": args.smooth, "spatial_intercept": args.spatial_intercept, "k": args.k}})
    scales = []
    for f in range(N_FOLDS):
        train = folds != f
        data = RegressionData(X[train], y[train], coords[train], [ids[i] for i in np.flatnonzero(train)], list(FEATURES), TARGET)
        scales.append(make_problem(data, config).natural_scales())
    for lam in args.lambdas:
        for ab in args.ab:
            pred = np.zeros_like(y)
            for f, s in enumerate(scales):
                train = folds != f
                model = S3R(smooth=args.smooth, lambda_smooth=lam * s["lambda_smooth"], alpha=ab * s["alpha"], beta=ab * s["beta"],
                            spatial_intercept=args.spatial_intercept, k=args.k)
                model.fit(X, y, coords, sample_weight=train.astype(np.float64))
                pred[~train] = np.asarray(model.predict(X))[~train]
            row = {"smooth": args.smooth, "spatial_intercept": args.spatial_intercept, "k": args.k, "lambda_relative": lam,
                   "alpha_beta_relative": ab, "rmse": rmse(pred, y),
                   "per_fold": [rmse(pred[folds == f], y[folds == f]) for f in range(N_FOLDS)]}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
