"""Spots on a lattice (Visium's hexagonal grid, Visium HD's square bins) are joined in whole distance shells.

kNN on a lattice has to split a shell of equidistant neighbours. Visium's second ring holds six spots at √3 times
the spacing, so k = 7 takes one of them, picked by the scanner's sub-pixel skew or the spots' order in the file,
and the same one for nearly every spot: on DLPFC 151675 the extra edges point along two of the lattice's three
axes and almost never along the third, so the smoothness penalty pulls harder along those axes — a property of
the graph, not of the tissue. On a detected lattice the graph instead joins every pair closer than the radius
that takes the most whole shells with at most k neighbours (Visium: its ring of six for k = 6…11, both rings
for k = 12…17; square bins: their four sides for k = 4…7, with the diagonals for k = 8…11), so it has the
lattice's symmetry. Irregular layouts (Xenium cells, Slide-seq beads) have no equidistant shells and keep kNN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["ARRAY_INDICES", "Lattice", "detect_lattice", "visium_array_indices"]

# distances within 3 % of each other form one shell: a scanned Visium slide's rings spread by ~0.1 % (DLPFC 151675),
# while the closest distinct shells a k ≤ 30 reaches are 6 % apart (a square lattice's 2√2 and 3)
SHELL_TOL = 0.03
# the rings of the two lattices spatial platforms use; a spot whose nearest ring holds this many equidistant neighbours
RINGS = {6: "hexagonal", 4: "square"}
# at least this share of the spots must have the same full ring: tissue edges and holes break the rest, while
# irregular points almost never have four or six neighbours within 3 % of each other
MIN_SHARE = 0.25
ARRAY_INDICES = (
    "the coordinates look like Visium array indices (integer array_col, array_row): a row's spots are 2 apart but the "
    "rows only 1, not √3, so the hexagonal grid is squashed into a square one and its ring of six cannot be found; pass "
    "the spots' pixel coordinates (Space Ranger's pxl_col_in_fullres, pxl_row_in_fullres) or x = array_col, y = √3 · array_row"
)


@dataclass(frozen=True)
class Lattice:
    """A detected lattice: its kind, spacing (median nearest distance) and whole shells as (outer ratio to the
    spacing, inner ratio of the next shell, neighbours up to and including the shell) of a spot with a full ring."""

    kind: str
    spacing: float
    shells: tuple[tuple[float, float, int], ...]

    def _last_whole(self, k: int) -> tuple[float, float, int] | None:
        """The farthest shell whose neighbours up to it number at most k."""
        fitting = [shell for shell in self.shells if shell[2] <= k]
        return fitting[-1] if fitting else None

    def radius(self, k: int) -> float | None:
        """The radius that joins the most whole shells with at most k neighbours (halfway to the next shell),
        or None when k is smaller than the first ring (then no whole shell fits and kNN decides)."""
        shell = self._last_whole(k)
        return None if shell is None else self.spacing * (shell[0] + shell[1]) / 2.0

    def neighbours(self, k: int) -> int:
        """Neighbours of a spot with a full ring under :meth:`radius` (k itself when no whole shell fits)."""
        shell = self._last_whole(k)
        return k if shell is None else shell[2]


def detect_lattice(xy: np.ndarray, k: int, *, distances: np.ndarray | None = None) -> Lattice | None:
    """The lattice the spots lie on, with its whole shells up to k neighbours, or None for an irregular layout.

    ``distances``: each spot's sorted distances to its nearest other spots, at least k + 1 of them (or all n − 1),
    when the caller has queried them already (kNN needs k + 1 anyway)."""
    n = xy.shape[0]
    depth = min(k + 1, n - 1)  # one neighbour past the k-th: is the shell holding it closed?
    if depth < min(RINGS) + 1:
        return None
    distances = cKDTree(xy).query(xy, k=depth + 1)[0][:, 1:] if distances is None else distances[:, :depth]
    nearest = distances[:, :1]
    if np.any(nearest <= 0):
        return None
    ratios = distances / nearest
    ring = (ratios <= 1.0 + SHELL_TOL).sum(axis=1)
    sizes, counts = np.unique(ring, return_counts=True)
    size = int(sizes[np.argmax(counts)])
    full = ring == size
    if size not in RINGS or full.mean() < MIN_SHARE:
        return None
    profile = np.median(ratios[full], axis=0)  # the typical spot's sorted distance ratios
    starts = np.flatnonzero(profile[1:] > profile[:-1] * (1.0 + SHELL_TOL)) + 1  # where a new shell begins
    shells = tuple((float(profile[s - 1]), float(profile[s]), int(s)) for s in starts)
    if not shells or shells[0][2] != size:
        return None
    return Lattice(RINGS[size], float(np.median(nearest[full])), shells)


def visium_array_indices(xy: np.ndarray) -> bool:
    """Whether the coordinates are Visium's array indices rather than positions: integers whose x + y all share one
    parity, most spots' four nearest at √2 (the diagonals). In those units the hexagonal grid reads as a square
    lattice turned by 45°, whose rows' own neighbours sit in the second shell with the next rows' — any graph on
    them smooths unevenly. Positions (pixels, µm) are not integers on a checkerboard."""
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] < 2 * max(RINGS) or not np.all(np.abs(xy) < 2**52):
        return False
    if not np.array_equal(xy, np.round(xy)):
        return False
    if np.unique((xy[:, 0] + xy[:, 1]).astype(np.int64) % 2).size != 1:
        return False
    distances = cKDTree(xy).query(xy, k=min(RINGS) + 1)[0][:, 1:]
    return bool(np.mean(np.all(np.abs(distances - np.sqrt(2.0)) < 1e-9, axis=1)) >= MIN_SHARE)
