"""How alike a trial's cross-validation fold maps are: the tie-breaker among maps the held-out loss cannot rank.

Each fold of the tuning fits a trial's map on that fold's training spots; the fold state files keep these maps
(W, spots × columns, on the solver's scale). Where the one-standard-error window reaches past the intercept-only
model's held-out loss, every map in it predicts no better than no map, so the loss cannot say which map to hand
on (the p > n cells of the realistic grid, benchmarks/README.md, sessions 13–14). There the map whose five fold
fits split the tissue the same way is the one least shaped by which spots were held out. No truth is used: the
number of domains is the report's own rule (``s3r.report.domains.spot_domains``: the largest mean silhouette in
2..8) on the average of the fold maps, then every fold map is cut into that many domains and the agreement is the
mean pairwise adjusted Rand index of those partitions. Deterministic (seeded k-means and subsample).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from s3r.errors import S3RInputError

SPOTS = 2000  # at most this many spots (a fixed seeded subsample) are clustered: cost bounded at any tissue size
K_RANGE = (2, 8)  # the report's default domain range


def fold_maps(states: Mapping, numbers: Sequence[int], prefix: str = "") -> dict[int, list[np.ndarray]] | None:
    """Each trial's fold maps (solver scale), folds in order, from ``states`` {(round, fold): fold_k.npz path}
    (``prefix``: the workflow's chunk files hold every target's arrays under ``t<i>.``). None when a file is gone
    or a trial has fewer than two fold maps (nothing to compare)."""
    from pathlib import Path

    from s3r.tune.files import _read_states

    wanted = {int(n) for n in numbers}
    maps: dict[int, list[np.ndarray]] = {n: [] for n in wanted}
    for key in sorted(states):
        path = Path(states[key])
        if not path.is_file():
            return None
        state = _read_states(path, prefix, keys=("numbers", "W"))
        if "W" not in state or "numbers" not in state:
            return None
        for b, number in enumerate(state["numbers"]):
            if int(number) in wanted:
                maps[int(number)].append(np.asarray(state["W"][:, b, :], dtype=np.float64))
    return maps if all(len(v) >= 2 for v in maps.values()) else None


def agreement(maps: Sequence[np.ndarray], seed: int = 0) -> tuple[float, int]:
    """(mean pairwise ARI of the fold maps' k-means partitions, k); k = 1 and agreement 0 for a map with no
    spatial structure (nothing to agree on)."""
    from sklearn.metrics import adjusted_rand_score

    from s3r.report.domains import spot_domains

    maps = [np.asarray(W, dtype=np.float64) for W in maps]
    n = maps[0].shape[0]
    if n > SPOTS:
        rows = np.sort(np.random.default_rng(seed).choice(n, SPOTS, replace=False))
        maps = [W[rows] for W in maps]
    _, k, _ = spot_domains(np.mean(maps, axis=0), k_range=K_RANGE, seed=seed)
    if k < 2:
        return 0.0, 1
    parts = []
    for W in maps:
        try:
            parts.append(spot_domains(W, k=k, seed=seed)[0])
        except S3RInputError:  # fewer distinct rows than k: this fold's map has less to cut; one domain
            parts.append(np.zeros(len(W), dtype=np.int64))
    return float(np.mean([adjusted_rand_score(a, b) for a, b in itertools.combinations(parts, 2)])), int(k)
