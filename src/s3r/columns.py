"""Copies of a batch's columns (problems on one axis of a large array) by runs of consecutive indices.

Why: numpy's fancy indexing on an inner axis is a gather element by element; a slice is a strided block copy. Writing
20 problems' edge duals into a fold's (10,459, 670, 25) float32 state took 14 ms by index array and 4 ms by slice
(benchmarks/README.md, session 27), and a batch's problems are mostly consecutive runs."""

from __future__ import annotations

import numpy as np


def runs(index) -> list[tuple[int, int, int]]:
    """(start, stop, offset) of each run of consecutive values in ``index``: ``index[offset:offset + stop − start]``
    is ``range(start, stop)``."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    if index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [index.size]])
    return [(int(index[a]), int(index[b - 1]) + 1, int(a)) for a, b in zip(starts, ends)]


def put(full: np.ndarray, axis: int, index, values: np.ndarray) -> None:
    """``full[..., index, ...] = values`` along ``axis``, one slice assignment per run of ``index``."""
    lead = (slice(None),) * axis
    for start, stop, offset in runs(index):
        full[lead + (slice(start, stop),)] = values[lead + (slice(offset, offset + stop - start),)]
