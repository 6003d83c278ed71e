"""Figures of a spatially smooth deconvolution (``s3r deconvolve`` or the workflow's deconvolve rule).

Reads ``proportions.csv`` (spots × cell types) and ``edge_weights.csv`` (spot_a, spot_b, weight) from the
output directory and draws: the proportion of every cell type on the tissue (small multiples on one 0–1
scale, so panels compare), the argmax regions (each spot coloured by its dominant cell type), and the learned
edge weights on the spot graph (low weights mark where the model let the mixture jump: tissue boundaries),
and, for the proportions mode, the evidence behind λ (``lambda_choice.csv``: held-out score per λ, the chosen
one marked), so a reader sees whether the spatial term earned its place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError

__all__ = ["deconvolution_report", "align_coords"]

_FIX = "point --deconv at the output directory of 's3r deconvolve' (or results/deconvolution/<sample>)"


def _read(path: Path, what: str, fix: str) -> pd.DataFrame:
    if not path.is_file():
        raise S3RInputError(f"{path}: {what} not found; {fix}")
    try:
        return pd.read_csv(path, index_col=None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise S3RInputError(f"{path}: cannot read {what} ({str(err).splitlines()[0]}); rewrite it as CSV") from None


def align_coords(coords, spots: list[str], source: str) -> np.ndarray:
    """Coordinates in ``spots`` order: from a DataFrame indexed by spot id, or an (n, 2) array already aligned."""
    if isinstance(coords, pd.DataFrame):
        index = [str(s) for s in coords.index]
        lookup = dict(zip(index, range(len(index))))
        missing = [s for s in spots if s not in lookup]
        if missing:
            raise S3RInputError(
                f"{source}: {len(missing)} spot(s) without coordinates, e.g. {missing[0]!r}; pass the sample's coordinates"
            )
        values = coords.to_numpy(dtype=np.float64)[[lookup[s] for s in spots]]
    else:
        values = np.asarray(coords, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != len(spots):
            raise S3RInputError(
                f"{source}: coordinates of shape {values.shape} for {len(spots)} spots; pass one (x, y) row per spot"
            )
    if values.shape[1] < 2:
        raise S3RInputError(f"{source}: coordinates need two columns (x, y), got {values.shape[1]}")
    return values[:, :2]


def deconvolution_report(deconv_dir, out_dir, *, coords, title: str = "") -> dict[str, Path]:
    """Draw proportions.png, regions.png and (when edge_weights.csv / lambda_choice.csv exist) edge_weights.png
    and lambda_choice.png (+ SVGs) into ``out_dir``; write regions.csv (spot, dominant cell type, its
    proportion). Returns {name: path}."""
    from s3r.report.style import use_report_style

    deconv_dir, out_dir = Path(deconv_dir), Path(out_dir)
    table = _read(deconv_dir / "proportions.csv", "cell-type proportions", _FIX)
    table = table.set_index(table.columns[0])
    spots = [str(s) for s in table.index]
    if table.shape[1] == 0 or not np.isfinite(table.to_numpy(dtype=np.float64)).all():
        raise S3RInputError(f"{deconv_dir / 'proportions.csv'}: needs one finite column per cell type; rerun the deconvolution")
    P = table.to_numpy(dtype=np.float64)
    cell_types = [str(c) for c in table.columns]
    xy = align_coords(coords, spots, str(deconv_dir / "proportions.csv"))
    out_dir.mkdir(parents=True, exist_ok=True)
    use_report_style()
    paths: dict[str, Path] = {}
    paths.update(_draw_proportions(P, cell_types, xy, out_dir, title))
    paths.update(_draw_regions(P, cell_types, spots, xy, out_dir, title))
    if (deconv_dir / "edge_weights.csv").is_file():
        paths.update(_draw_edge_weights(deconv_dir / "edge_weights.csv", spots, xy, out_dir, title))
    if (deconv_dir / "lambda_choice.csv").is_file():
        paths.update(_draw_lambda_choice(deconv_dir / "lambda_choice.csv", out_dir))
    return paths


def _draw_proportions(P: np.ndarray, cell_types: list[str], xy: np.ndarray, out_dir: Path, title: str) -> dict[str, Path]:
    """One panel per cell type on a shared 0–1 scale, so panels compare."""
    import matplotlib.pyplot as plt

    from s3r.report.style import grid_shape, panel_figsize, save_figure, spatial_scatter

    nrows, ncols = grid_shape(len(cell_types), max_cols=4)
    fig, axes = plt.subplots(nrows, ncols, figsize=panel_figsize(xy, nrows, ncols, panel_width=3.0), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, j in zip(axes.ravel(), range(len(cell_types))):
        ax.set_axis_on()
        points = spatial_scatter(ax, xy, P[:, j], cmap="magma_r", vmax=1.0, title=cell_types[j], colorbar=False)
        points.set_clim(0.0, 1.0)
    fig.suptitle(f"{title}\ncell-type proportions" if title else "cell-type proportions")
    fig.tight_layout()
    fig.colorbar(points, ax=axes.ravel().tolist(), shrink=0.6, pad=0.02, label="proportion")
    return {f"proportions_{k}": v for k, v in save_figure(fig, out_dir / "proportions.png").items()}


def _draw_regions(P, cell_types, spots, xy, out_dir: Path, title: str) -> dict[str, Path]:
    """regions.csv (spot, dominant cell type, its proportion) and the map of dominant types."""
    import matplotlib.pyplot as plt

    from s3r.io import write_csv
    from s3r.report.style import panel_figsize, save_figure, spatial_scatter

    dominant = np.asarray(cell_types, dtype=object)[np.argmax(P, axis=1)]
    write_csv(
        pd.DataFrame({"spot": spots, "dominant": dominant, "proportion": P.max(axis=1)}),
        out_dir / "regions.csv",
        index=False,
    )
    paths = {"regions_csv": out_dir / "regions.csv"}
    fig, ax = plt.subplots(figsize=panel_figsize(xy, 1, 1, extra_width=1.6))
    spatial_scatter(ax, xy, dominant, categorical=True, title="dominant cell type per spot", legend_title="cell type")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    paths.update({f"regions_{k}": v for k, v in save_figure(fig, out_dir / "regions.png").items()})
    return paths


def _draw_edge_weights(edges_path: Path, spots, xy, out_dir: Path, title: str) -> dict[str, Path]:
    """The learned edge weights on the spot graph (low weights, drawn on top, mark boundaries)."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from s3r.report.style import image_orientation, panel_figsize, save_figure

    edges = _read(edges_path, "edge weights", _FIX)
    missing = [c for c in ("spot_a", "spot_b", "weight") if c not in edges.columns]
    if missing:
        raise S3RInputError(f"{edges_path}: missing column(s) {', '.join(missing)}; expected spot_a, spot_b, weight")
    lookup = {s: i for i, s in enumerate(spots)}
    a = edges["spot_a"].astype(str).map(lookup)
    b = edges["spot_b"].astype(str).map(lookup)
    if a.isna().any() or b.isna().any():
        bad = edges.loc[a.isna() | b.isna()].iloc[0]
        raise S3RInputError(
            f"{edges_path}: edge ({bad['spot_a']}, {bad['spot_b']}) names a spot not in proportions.csv; "
            "both files must come from the same run"
        )
    w = edges["weight"].to_numpy(dtype=np.float64)
    segments = np.stack([xy[a.to_numpy(dtype=np.int64)], xy[b.to_numpy(dtype=np.int64)]], axis=1)
    fig, ax = plt.subplots(figsize=panel_figsize(xy, 1, 1, extra_width=1.0))
    ax.scatter(xy[:, 0], xy[:, 1], s=2.0, color="0.75", linewidths=0)
    order = np.argsort(-w, kind="stable")  # low weights (boundaries) drawn last, on top
    lines = LineCollection(segments[order], array=w[order], cmap="viridis", linewidths=1.0)
    if len(w) and np.ptp(w) > 0:
        lines.set_clim(float(w.min()), float(w.max()))
    ax.add_collection(lines)
    ax.set_aspect("equal")
    ax.autoscale_view()
    image_orientation(ax)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"learned edge weights ({len(w)} edges; low = boundary)")
    fig.colorbar(lines, ax=ax, shrink=0.8, pad=0.02, label="edge weight")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return {f"edge_weights_{k}": v for k, v in save_figure(fig, out_dir / "edge_weights.png").items()}


def _draw_lambda_choice(choice_path: Path, out_dir: Path) -> dict[str, Path]:
    """The evidence behind λ (proportions mode): held-out score per λ, the chosen one marked."""
    import matplotlib.pyplot as plt

    from s3r.report.style import save_figure

    choice = _read(choice_path, "the λ choice", _FIX)
    missing = [c for c in ("lambda", "mean", "se", "chosen") if c not in choice.columns]
    if missing:
        raise S3RInputError(f"{choice_path}: missing column(s) {', '.join(missing)}; expected lambda, mean, se, chosen")
    if len(choice) <= 1:
        return {}
    lam = choice["lambda"].to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.errorbar(lam, choice["mean"], yerr=choice["se"].fillna(0.0), marker="o", color="0.3", capsize=2)
    chosen = choice["chosen"].astype(str).str.lower() == "true"
    ax.plot(lam[chosen], choice.loc[chosen, "mean"], "o", color="tab:red", markersize=9, label="chosen")
    positive = lam[lam > 0]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
    ax.set_xlabel("λ (0 = no spatial term)")
    ax.set_ylabel("held-out log-likelihood per count")
    ax.set_title("λ chosen by held-out genes")
    ax.legend(frameon=False)
    fig.tight_layout()
    return {f"lambda_choice_{k}": v for k, v in save_figure(fig, out_dir / "lambda_choice.png").items()}
