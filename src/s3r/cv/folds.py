"""Cross-validation folds: spatial block and random schemes, and which spots a fold hides, trains on and scores."""

from __future__ import annotations

import numpy as np

from s3r.errors import S3RInputError
from s3r.cv.names import DEFAULT_BLOCKS_PER_FOLD, FOLD_SCHEMES  # noqa: F401 (re-exported)
from s3r.graph.coords import validate_coords


# -- fold schemes ----------------------------------------------------------------------------------------
def spatial_blocks(coords, n_blocks: int) -> np.ndarray:
    """Block id per spot from recursive median splits along the longer side.

    Each block is the set of spots inside an axis-aligned rectangle (so it is contiguous), and block sizes
    differ by at most one spot: the sizes are fixed first and every split cuts at the count they add up to.
    """
    xy = validate_coords(coords, source="coordinates")
    n = xy.shape[0]
    if not 1 <= n_blocks <= n:
        raise S3RInputError(f"cannot cut {n} spots into {n_blocks} spatial blocks; use between 1 and {n} blocks")
    sizes = np.full(n_blocks, n // n_blocks, dtype=np.int64)
    sizes[: n % n_blocks] += 1
    labels = np.empty(n, dtype=np.int64)
    stack = [(np.arange(n), 0, n_blocks)]  # (spots, first block, number of blocks)
    while stack:
        spots, first, count = stack.pop()
        if count == 1:
            labels[spots] = first
            continue
        pts = xy[spots]
        axis = int(np.argmax(np.ptp(pts, axis=0)))
        # ties on the cut axis (grid layouts) are broken along the other axis, so a cut never scatters a row
        order = spots[np.lexsort((pts[:, 1 - axis], pts[:, axis]))]
        half = count // 2
        n_left = int(sizes[first : first + half].sum())
        stack.append((order[n_left:], first + half, count - half))
        stack.append((order[:n_left], first, half))
    return labels


def spatial_block_folds(coords, n_folds: int = 5, *, blocks_per_fold: int = DEFAULT_BLOCKS_PER_FOLD, seed: int = 0) -> np.ndarray:
    """Fold id per spot: ``n_folds × blocks_per_fold`` balanced blocks dealt to folds in a seeded random order.

    Several smaller blocks per fold keep the held-out spots close to training spots (interpolation, as the
    final fit faces at tissue holes) while still hiding whole neighbourhoods.
    """
    n_folds, blocks_per_fold = _check_folds(n_folds, len(coords)), int(blocks_per_fold)
    if blocks_per_fold < 1:
        raise S3RInputError(f"blocks_per_fold must be ≥ 1; got {blocks_per_fold}")
    n_blocks = min(n_folds * blocks_per_fold, len(coords))
    blocks = spatial_blocks(coords, n_blocks)
    order = np.random.default_rng(seed).permutation(n_blocks)
    fold_of_block = np.empty(n_blocks, dtype=np.int64)
    fold_of_block[order] = np.arange(n_blocks) % n_folds
    return fold_of_block[blocks]


def random_folds(n_spots: int, n_folds: int = 5, *, seed: int = 0) -> np.ndarray:
    """Fold id per spot, sizes balanced, assignment seeded (the reference's scheme, for comparison)."""
    n_folds = _check_folds(n_folds, n_spots)
    folds = np.arange(n_spots) % n_folds
    return np.random.default_rng(seed).permutation(folds).astype(np.int64)


def make_folds(coords, n_folds: int = 5, scheme: str = "blocks", *, seed: int = 0, blocks_per_fold: int = DEFAULT_BLOCKS_PER_FOLD) -> np.ndarray:
    if scheme == "blocks":
        return spatial_block_folds(coords, n_folds, blocks_per_fold=blocks_per_fold, seed=seed)
    if scheme == "random":
        return random_folds(len(coords), n_folds, seed=seed)
    raise S3RInputError(f"unknown fold scheme {scheme!r}; use one of {', '.join(FOLD_SCHEMES)}")


def _check_folds(n_folds, n_spots: int) -> int:
    n_folds = int(n_folds)
    if not 2 <= n_folds <= n_spots:
        raise S3RInputError(f"need 2 ≤ folds ≤ number of spots ({n_spots}); got {n_folds}")
    return n_folds


def heldout_mask(folds, fold: int) -> np.ndarray:
    return np.asarray(folds) == fold


def training_weights(folds, fold: int) -> np.ndarray:
    """Observation weights o_i: 0 hides a held-out spot from the data fit while it stays in the graph."""
    return (~heldout_mask(folds, fold)).astype(np.float64)


def free_rows(y, heldout, mask_zero_response: bool) -> np.ndarray:
    """The y == 0 mask applied to training spots only: a held-out response must not decide its own W."""
    y = np.asarray(y)
    if not mask_zero_response:
        return np.ones(y.shape[0])
    return ((y != 0) | np.asarray(heldout, dtype=bool)).astype(np.float64)


def scored_spots(y, heldout, mask_zero_response: bool) -> np.ndarray:
    """Held-out spots that count in the loss; with the mask on, y == 0 marks a dropout, not an observation."""
    heldout = np.asarray(heldout, dtype=bool)
    return heldout & (np.asarray(y) != 0) if mask_zero_response else heldout
