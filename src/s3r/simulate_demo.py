"""The workflow's demo inputs: several targets per simulated sample, in both input layouts.

Beside :mod:`s3r.simulate` (one simulation, one target), which it calls; kept apart so that module stays a
readable size.
"""

from __future__ import annotations

import numpy as np

__all__ = ["simulate_demo"]


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

