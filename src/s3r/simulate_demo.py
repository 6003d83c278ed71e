"""Simulated data written to the input layouts: one simulation (``write_reference_csv``, ``write_h5ad``) and the
workflow's demo inputs, several targets per simulated sample (``simulate_demo``).

Beside :mod:`s3r.simulate` (one simulation, one target), which it calls and which re-exports the two writers;
kept apart so that module stays a readable size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError

if TYPE_CHECKING:
    from s3r.simulate import Simulation

__all__ = ["simulate_demo", "write_reference_csv", "write_h5ad"]


def simulate_demo(spec: dict, *, x_csv, y_csv, coords_csv, h5ad) -> None:
    """Write one simulated demo input in both layouts (reference CSV triplet and .h5ad).

    All targets share the design X and the spots; the first is the simulator's own response, each further
    target is a fresh coefficient draw on the same regions (another seed), so two targets of a sample have
    different informative features, as two genes would. ``spec["design"]`` (default ``"reference"``) picks
    the simulator's design (``s3r.simulate``): ``"expression"`` gives log-expression-like features and
    targets whose signal has sd 1, so ``sigma`` is the noise sd relative to the signal.
    """
    import pandas as pd

    from s3r.io import atomic_path, write_csv
    from s3r.simulate import simulate, simulate_target

    seed, sigma = int(spec["seed"]), float(spec["sigma"])
    design = spec.get("design", "reference")
    base = simulate(
        spec["layout"], sigma=sigma, n_features=spec["n_features"], geometry=spec["geometry"],
        n_spots=spec["n_spots"], seed=seed, design=design,
    )
    X, n = base.X, base.n_spots
    responses, truths = {}, {}
    for k, name in enumerate(spec["targets"]):
        if k == 0:
            responses[name], truths[name] = base.y, base.W
            continue
        if design != "reference":
            responses[name], truths[name] = simulate_target(base, seed=seed + k)
            continue
        # the reference design's further targets, kept as they were so its demo data do not change
        other = simulate(spec["layout"], sigma=sigma, n_features=base.n_features, geometry=base.coords, seed=seed + k)
        noise = np.random.default_rng([seed, k]).standard_normal(n)
        responses[name] = np.einsum("ij,ij->i", X, other.W) + sigma * noise
        truths[name] = other.W

    spots, features = base.spot_ids, base.feature_names
    write_csv(pd.DataFrame(X.T, index=features, columns=spots), x_csv)
    write_csv(pd.DataFrame(responses, index=spots), y_csv)
    write_csv(pd.DataFrame({"row": base.coords[:, 0], "col": base.coords[:, 1]}, index=spots), coords_csv)

    import anndata

    targets = list(responses)
    adata = anndata.AnnData(
        X=np.column_stack([X] + [responses[t] for t in targets]),
        obs=pd.DataFrame({"region": pd.Categorical(base.regions)}, index=pd.Index(spots)),
        var=pd.DataFrame(
            {"role": ["feature"] * len(features) + ["target"] * len(targets)}, index=pd.Index(features + targets)
        ),
        obsm={"spatial": base.coords.copy(), **{f"true_W_{t}": truths[t] for t in targets}},
        uns={"s3r_demo": {k: v for k, v in spec.items() if k != "targets"} | {"targets": targets}},
    )
    with atomic_path(h5ad) as tmp:
        adata.write_h5ad(tmp)


def write_reference_csv(sim: Simulation, out_dir: str | os.PathLike, prefix: str = "") -> dict[str, Path]:
    """Write the S3R reference CSV layout (``{prefix}X.csv`` features × spots, ``{prefix}Y.csv`` with column
    ``target``, ``{prefix}C.csv`` with ``row``, ``col``) so the reference tools can read simulated data.

    Returns the paths by role: ``{"X": ..., "Y": ..., "coords": ...}``.
    """
    from s3r.io import write_csv

    out_dir = Path(out_dir)
    spots = sim.spot_ids
    paths = {
        "X": out_dir / f"{prefix}X.csv",
        "Y": out_dir / f"{prefix}Y.csv",
        "coords": out_dir / f"{prefix}C.csv",
    }
    write_csv(pd.DataFrame(sim.X.T, index=sim.feature_names, columns=spots), paths["X"])
    write_csv(pd.DataFrame({"target": sim.y}, index=spots), paths["Y"])
    write_csv(pd.DataFrame({"row": sim.coords[:, 0], "col": sim.coords[:, 1]}, index=spots), paths["coords"])
    return paths


def write_h5ad(sim: Simulation, path: str | os.PathLike, target_name: str = "target") -> Path:
    """Write the simulation as AnnData: the target is a gene next to ``feature_1..p`` so that
    ``read_h5ad(path, target=target_name, features=[...])`` works; truth in ``.obsm["true_W"]`` and
    ``.obs["region"]``, parameters in ``.uns["s3r_simulation"]``."""
    import anndata

    from s3r.io import atomic_path

    features = sim.feature_names
    if target_name in features:
        raise S3RInputError(f"write_h5ad: target_name {target_name!r} collides with a feature name; pick another")
    obs = pd.DataFrame({"region": pd.Categorical(sim.regions)}, index=pd.Index(sim.spot_ids))
    var = pd.DataFrame({"role": ["feature"] * len(features) + ["target"]}, index=pd.Index(features + [target_name]))
    adata = anndata.AnnData(
        X=np.hstack([sim.X, sim.y[:, None]]),
        obs=obs,
        var=var,
        obsm={"spatial": sim.coords.copy(), "true_W": sim.W.copy()},
        uns={
            "s3r_simulation": {
                "layout": sim.layout,
                "geometry": sim.geometry,
                "sigma": float(sim.sigma),
                "seed": int(sim.seed),
                "design": sim.design,
                "intercept": float(sim.intercept),
                "coef_scale": float(sim.coef_scale),
                "informative": {str(r): np.asarray(v, dtype=np.int64) for r, v in sim.informative.items()},
            }
        },
    )
    path = Path(path)
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return path
