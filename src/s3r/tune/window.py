"""Large sections are tuned on a window of the section, and the chosen λ, α, β fitted on all of it.

The standard parameterisation puts the loss and every penalty on per-spot scales (``Problem.penalty_multiplier``),
so a parameter set means the same on a compact piece of tissue as on the whole section, and cross-validating on
the window costs what a section of its size costs. The search box stays the section's (:func:`section_scales`).
The window is the ``max_spots`` spots nearest the centroid (:func:`s3r.graph.window.window_spots`), whose graph
is the section's restricted to it. Measured (benchmarks/README.md, session 22) on
10,000-spot simulations tuned on every spot and on a 2,500-spot window: one disc chose the whole section's trial
in two of three cells and a map as good in the third (ARI 0.925 vs 0.921), at a quarter of the cost; four discs
around k-means centres did worse (0.917 / 0.926 / 0.599 against 0.921 / 0.939 / 0.894): k-means puts the discs in
the middle of compact domains, so the window lacks the boundaries whose trade-off λ is chosen for, and at σ = 2
it chose a map smoothed three times as hard. The known limit of one disc: a domain found only at the tissue's rim
(white matter in a corner) is not in the window's held-out losses.
"""

from __future__ import annotations

import numpy as np

from s3r.io import RegressionData


def window_index(coords, config: dict) -> np.ndarray | None:
    """Sorted indices of the spots the search runs on, or None where the section has at most ``max_spots``."""
    from s3r.graph.window import window_spots

    limit = config.get("max_spots")
    n = int(np.asarray(coords).shape[0])
    if limit is None or n <= int(limit):
        return None
    return window_spots(coords, int(limit))


def on_window(data: RegressionData, index: np.ndarray | None, offset=None):
    """(data, offset) restricted to the window ``index`` (unchanged without one)."""
    if index is None:
        return data, offset
    return data.spots(index), None if offset is None else np.asarray(offset)[index]


def section_scales(data: RegressionData, config: dict, index: np.ndarray | None, offset=None, graph=None) -> dict | None:
    """The whole section's natural scales when the search runs on a window of it (None otherwise, or for absolute
    ranges): the relative search box is the section's — the λ that holds *its* maps constant, the α, β that zero
    *its* constant model — so the window's trials are the very parameter sets the final fit can be given. A window's
    own scales differ several-fold (a smaller piece needs less λ to be flat)."""
    from s3r.tune.evaluate import make_problem
    from s3r.tune.space import _relative

    if index is None or not _relative(config):
        return None
    return make_problem(data, config, offset, graph=graph).natural_scales()


def window_record(index: np.ndarray | None, n_spots: int) -> dict | None:
    """What best_params.json says about the window: None for a search on every spot."""
    if index is None:
        return None
    return {"spots": int(len(index)), "of": int(n_spots)}


def window_note(record: dict | None) -> str:
    """The clause the verdict carries, so a held-out loss is read as the window's."""
    if not record:
        return ""
    return (f" (cross-validated on a window of {record['spots']:,} of the section's {record['of']:,} spots, "
            "one disc around the tissue's centre)")
