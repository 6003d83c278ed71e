"""What limits a p > n grid cell's map (issue 17, session 14): the support, or the maps of the true features?

For one kept cell of ``realistic_grid.py grid --keep`` (seed 0 data, defaults): (a) the selected trial refitted on all
spots (as the grid's final fit) and scored by k-means ARI on all columns, on the true features' columns only and on
the false ones only; (b) a default tuning and final fit on the true features alone (the support given), scored the
same way. If (b) is far above (a), the loss is the support / estimation among the distractors, not the selection.

    python benchmarks/pgtn_support.py benchmarks/out/grid_s14_keep/four_regions_highdim_sigma0.5_seed0
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from realistic_grid import DESIGN, estimator_kwargs, kmeans_ari


def main(cell: Path) -> None:
    from s3r import S3R, tune
    from s3r.io import RegressionData
    from s3r.simulate import simulate

    layout, sigma, seed = re.fullmatch(r"(.+)_sigma([0-9.]+)_seed(\d+)", cell.name).groups()
    sim = simulate(layout, sigma=float(sigma), seed=int(seed), design=DESIGN)
    true = sorted(set(sum(sim.informative.values(), [])))
    false = [j for j in range(sim.n_features) if j not in true]
    cpu = time.process_time()
    kwargs, _ = estimator_kwargs(json.loads((cell / "best_params.json").read_text()))
    W = np.asarray(S3R(**kwargs).fit(sim.X, sim.y, sim.coords).coef_)
    print(f"{cell.name}: (a) selected trial refitted: ARI {kmeans_ari(W, sim.regions):.3f} on all {W.shape[1]} columns, "
          f"{kmeans_ari(W[:, true], sim.regions):.3f} on the {len(true)} true ones, {kmeans_ari(W[:, false], sim.regions):.3f} on the "
          f"false ones ({time.process_time() - cpu:.0f} CPU s)", flush=True)
    cpu = time.process_time()
    data = RegressionData(sim.X[:, true], sim.y, sim.coords, sim.spot_ids, [sim.feature_names[j] for j in true], "target")
    with tempfile.TemporaryDirectory() as scratch:
        returned = tune.run_search(data, None, scratch)
        best = {**returned, **json.loads((Path(scratch) / "best_params.json").read_text())}
    Wt = np.asarray(S3R(**estimator_kwargs(best)[0]).fit(data.X, data.y, data.coords).coef_)
    print(f"{cell.name}: (b) default tuning on the {len(true)} true features only: ARI {kmeans_ari(Wt, sim.regions):.3f}, trial "
          f"{best['tuning']['trial']}, CV / intercept-only {best['tuning']['cv_loss'] / best['tuning']['null_cv_loss']:.3f} "
          f"({time.process_time() - cpu:.0f} CPU s, load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        main(Path(arg))
