"""Shared look and byte-for-byte reproducibility of every report figure.

A workflow reruns a report rule whenever an input changes; if the same inputs gave different bytes (SVG ids
drawn at random, creation dates in the metadata), every rerun would look like a change and reviews of the
outputs would drown in noise. Everything here is therefore fixed: backend, DPI, fonts, SVG hash salt, metadata.
Spatial maps keep the tissue's true aspect ratio and the orientation the coordinates give it (no flipping), and
size points from the spot spacing so spots tile the tissue instead of overlapping or leaving gaps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DPI",
    "DIVERGING",
    "SEQUENTIAL",
    "use_report_style",
    "spot_size",
    "image_orientation",
    "spatial_scatter",
    "categorical_colors",
    "save_figure",
    "grid_shape",
    "panel_figsize",
    "feature_order",
]

DPI = 120
DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"

# PNG: drop the matplotlib version so an upgrade alone does not change bytes; SVG/PDF: no creation date.
_METADATA = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
}

_RC = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "savefig.bbox": "standard",
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "svg.hashsalt": "s3r-report",
    "svg.fonttype": "path",  # glyphs as paths: identical rendering without the reader's fonts
    "pdf.fonttype": 42,
    "font.family": "DejaVu Sans",  # bundled with matplotlib, so the same on every machine
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "image.cmap": SEQUENTIAL,
    "path.simplify": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def use_report_style() -> None:
    """Select the Agg backend and the fixed settings above (idempotent; call before creating figures)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg", force=True)
    os.environ.setdefault("SOURCE_DATE_EPOCH", "0")
    matplotlib.rcParams.update(_RC)


def _nn_spacing(coords: np.ndarray) -> float:
    """Median distance from each spot to its nearest distinct neighbour (the spot pitch)."""
    from scipy.spatial import cKDTree

    coords = np.asarray(coords, dtype=np.float64)
    unique = np.unique(coords, axis=0)
    if len(unique) < 2:
        return 0.0
    dist, _ = cKDTree(unique).query(unique, k=2)
    return float(np.median(dist[:, 1]))


def spot_size(coords, ax_width_in: float, ax_height_in: float | None = None, *, fill: float = 0.9) -> float:
    """Marker area (points²) at which spots of the given layout tile an axis ``ax_width_in`` inches wide.

    The spot pitch (median nearest-neighbour distance) is converted to points with the scale an equal aspect
    ratio gives: the tissue fills the width, or the height when that is the tighter side (``ax_height_in``).
    ``fill`` < 1 leaves a hairline gap between spots.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[0] == 0:
        return 4.0
    pitch = _nn_spacing(coords)
    span = np.ptp(coords, axis=0) if coords.shape[0] > 1 else np.zeros(2)
    scales = [float(ax_width_in) / span[0]] if span[0] > 0 else []
    if ax_height_in is not None and span[1] > 0:
        scales.append(float(ax_height_in) / span[1])
    if not scales and span.max() > 0:
        scales = [float(ax_width_in) / float(span.max())]
    if pitch <= 0 or not scales:
        return 36.0
    diameter_pt = fill * pitch * min(scales) * 72.0
    return float(np.clip(diameter_pt**2, 0.25, 400.0))


def categorical_colors(n: int) -> list:
    """``n`` distinguishable colours: tab10, then tab20, then evenly spaced hues (deterministic)."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    cmap = matplotlib.colormaps["hsv"]
    return [cmap(i / n) for i in range(n)]


def _axis_size_in(ax, colorbar: bool) -> tuple[float, float]:
    """The axis box in inches, less the share a colour bar will take from its width (fraction 0.15 + pad)."""
    fig = ax.get_figure()
    box = ax.get_position()
    width = box.width * fig.get_figwidth() * (0.83 if colorbar else 1.0)
    return float(width), float(box.height * fig.get_figheight())


def image_orientation(ax) -> None:
    """y downwards, as image rows run: spatial omics coordinates (Space Ranger and Xenium pixels or microns, AnnData's
    ``obsm['spatial']``) are image coordinates, and scanpy and squidpy draw them this way. A map drawn over its tissue
    image and one drawn without it then show the section the same way up (plain maps were drawn y upwards, the
    section mirrored top to bottom against its image and against scanpy's plots of the same coordinates)."""
    if not ax.yaxis_inverted():
        ax.invert_yaxis()


ISOLATED_NEIGHBOURS = 6  # a spot's neighbourhood for the colour limit: itself and its six nearest (a Visium hexagon)
CLIP_MARGIN = 1.5  # the scale is clipped only where some spot exceeds the neighbourhoods' limit by more than this factor


def neighbourhoods(coords, neighbours: int = ISOLATED_NEIGHBOURS) -> np.ndarray:
    """(n, k) each spot and its ``neighbours`` nearest (k ≤ n): the colour limits' neighbourhoods, made once per figure
    (a k-d tree over 10⁶ spots costs seconds, and a report draws a dozen maps of the same spots)."""
    from scipy.spatial import cKDTree

    coords = np.asarray(coords, dtype=np.float64)
    k = min(neighbours + 1, coords.shape[0])
    if k < 1:
        return np.zeros((0, 0), dtype=np.int64)
    return cKDTree(coords).query(coords, k=k)[1].reshape(coords.shape[0], k)


def colour_limit(coords, values, neighbours: int = ISOLATED_NEIGHBOURS, *, near: np.ndarray | None = None) -> tuple[float, int]:
    """A symmetric colour limit for a map that isolated spots cannot set, and how many spots lie beyond it.

    A single spot's coefficient can leave its neighbours' far behind (a regulator detected in that spot alone: its
    coefficient there fits one spot's residual), and a limit set by the largest |value| then washes the rest of the map
    out: on DLPFC MBP, OLIG1's white matter (0.21) was drawn on a scale to ±1.3; on MERFISH Mbp, Opalin's 0.016 on a
    scale to ±0.17 (session 34). The limit here is the largest value that a majority of some spot's neighbourhood
    (itself and its ``neighbours`` nearest spots) reaches — the maximum over spots of the neighbourhood median of
    |value| — so a domain of a few spots still sets it and one spot does not. Where no spot exceeds it by more than
    ``CLIP_MARGIN`` (a smooth map's peak), or it is 0 (only isolated spots are non-zero), the largest |value| stands.
    ``near``: :func:`neighbourhoods` of ``coords``, where the caller draws several maps of the same spots."""
    size = np.abs(np.asarray(values, dtype=np.float64))
    near = neighbourhoods(coords, neighbours) if near is None else near
    return _neighbourhood_limit(near, np.where(np.isfinite(size), size, 0.0), 0.0)


def upper_colour_limit(coords, values, low: float, neighbours: int = ISOLATED_NEIGHBOURS, *,
                       near: np.ndarray | None = None) -> tuple[float, int]:
    """:func:`colour_limit` for a sequential scale starting at ``low``: the top that isolated high spots (a cell with
    ten times its neighbours' expression) cannot set, and how many spots lie above it."""
    values = np.asarray(values, dtype=np.float64)
    near = neighbourhoods(coords, neighbours) if near is None else near
    return _neighbourhood_limit(near, np.where(np.isfinite(values), values, low), float(low))


def _neighbourhood_limit(near: np.ndarray, values: np.ndarray, base: float) -> tuple[float, int]:
    if values.size == 0:
        return base, 0
    largest = float(values.max())
    if near.shape[1] < 3:
        return largest, 0
    limit = float(np.median(values[near], axis=1).max())
    if limit <= base or largest - base <= CLIP_MARGIN * (limit - base):  # nothing stands out: a smooth map's own peak
        return largest, 0
    return limit, int((values > limit).sum())


def spatial_scatter(
    ax,
    coords,
    values,
    *,
    cmap=None,
    center_zero: bool = False,
    vmax: float | None = None,
    vmin: float | None = None,
    title: str = "",
    colorbar: bool = True,
    categorical: bool = False,
    size: float | None = None,
    legend_title: str = "",
    tissue=None,
    extend: str = "neither",
):
    """One value per spot at its coordinates, true aspect ratio, y running downwards (:func:`image_orientation`).

    ``center_zero``: a diverging map with zero at the midpoint and symmetric limits ±``vmax`` (default: the
    largest absolute value), so white means "no effect" and equal colour distance means equal magnitude.
    Otherwise a sequential map over [``vmin``, ``vmax``] (default: the values' range), e.g. to share one scale.
    ``categorical``: ``values`` are labels; one colour each and a legend instead of a colour bar.
    ``tissue``: a :class:`s3r.report.tissue.Tissue` drawn underneath (coordinates in its full-resolution pixels).
    ``extend``: the colour bar's pointed ends ("both", "min", "max") where values beyond the limits are drawn at them.
    Returns the PathCollection.
    """
    import matplotlib.colors as mcolors

    coords = np.asarray(coords, dtype=np.float64)
    s = spot_size(coords, *_axis_size_in(ax, colorbar and not categorical)) if size is None else float(size)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    if tissue is not None:
        from s3r.report.tissue import draw_tissue

        draw_tissue(ax, tissue, coords)
    else:
        image_orientation(ax)
    if categorical:
        labels = np.asarray(values)
        levels = sorted(set(labels.tolist()), key=lambda v: (str(type(v)), v))
        colors = categorical_colors(len(levels))
        lookup = {level: i for i, level in enumerate(levels)}
        idx = np.array([lookup[v] for v in labels.tolist()], dtype=int)
        rgba = np.array([colors[i] for i in idx]) if len(idx) else np.zeros((0, 4))
        points = ax.scatter(coords[:, 0], coords[:, 1], c=rgba, s=s, linewidths=0, rasterized=False)
        if colorbar and levels:
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], marker="o", linestyle="", color=colors[i], label=str(level)) for i, level in enumerate(levels)]
            ax.legend(handles=handles, title=legend_title or None, loc="upper left", bbox_to_anchor=(1.0, 1.0),
                      frameon=False, fontsize=8, handletextpad=0.2, borderaxespad=0.2)
        return points
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if center_zero:
        limit = float(vmax) if vmax is not None else (float(np.abs(finite).max()) if finite.size else 0.0)
        limit = limit if limit > 0 else 1.0
        norm = mcolors.TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
        cmap = cmap or DIVERGING
    else:
        lo = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
        hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
        if hi <= lo:
            hi = lo + 1.0
        norm = mcolors.Normalize(vmin=lo, vmax=hi)
        cmap = cmap or SEQUENTIAL
    points = ax.scatter(coords[:, 0], coords[:, 1], c=values, s=s, cmap=cmap, norm=norm, linewidths=0)
    if colorbar:
        ax.get_figure().colorbar(points, ax=ax, shrink=0.8, fraction=0.15, pad=0.02, extend=extend)
    return points


def save_figure(fig, png_path, *, vector: str | None = "svg", dpi: int = DPI) -> dict[str, Path]:
    """Write ``png_path`` and (``vector`` = "svg" or "pdf") a vector copy beside it, atomically; close ``fig``.

    Returns ``{"png": path, "svg"|"pdf": path}``. The figure is closed even when writing fails, so a long
    report run does not accumulate open figures.
    """
    import matplotlib.pyplot as plt

    from s3r.io import atomic_path

    png_path = Path(png_path)
    if vector not in (None, "svg", "pdf"):
        raise ValueError(f"vector must be 'svg', 'pdf' or None, not {vector!r}")
    paths = {"png": png_path}
    if vector:
        paths[vector] = png_path.with_suffix(f".{vector}")
    try:
        for fmt, path in paths.items():
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
    finally:
        plt.close(fig)
    return paths


def grid_shape(n_panels: int, max_cols: int = 3) -> tuple[int, int]:
    """(rows, cols) for ``n_panels`` small multiples, at most ``max_cols`` wide."""
    n = max(int(n_panels), 1)
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


def panel_figsize(coords, n_rows: int, n_cols: int, *, panel_width: float = 3.6, extra_width: float = 0.8) -> tuple[float, float]:
    """Figure size whose panels follow the tissue's aspect ratio (plus room for a colour bar and a title)."""
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim == 2 and coords.shape[0] > 1:
        w, h = np.ptp(coords, axis=0)
        ratio = float(h / w) if w > 0 else 1.0
    else:
        ratio = 1.0
    ratio = float(np.clip(ratio, 0.25, 4.0))
    return (n_cols * (panel_width + extra_width), n_rows * (panel_width * ratio + 0.6) + 0.4)


def feature_order(values: Sequence[float], names: Sequence[str]) -> list[int]:
    """Indices by decreasing value, ties by name then index, so the order never depends on float noise."""
    return sorted(range(len(names)), key=lambda j: (-float(values[j]), str(names[j]), j))
