"""Coefficient programmes of one sample: features that act on the targets together.

The input is one features × targets matrix: for each target, a summary over spots of each feature's
coefficient. The summary is the **signed mean over spots**: the sign says whether a feature raises or lowers
the target, which is what defines a programme (features that push the same targets the same way), and
averaging over spots weights each effect by the share of tissue where it holds. A mean of |w| would merge
activators with repressors; a maximum would let one spot decide. The cost is that an effect that switches sign
between regions averages towards zero: that is spatial, not programme, structure, and the domain maps and
per-target coefficient maps show it (``statistic="mean_abs"`` is offered for that case).

Features are clustered by the direction of their profile across targets (cosine distance, average linkage,
optimal leaf order, all deterministic): "moves the same targets in the same proportions" regardless of
strength. The tree is cut at a fixed distance (or into a fixed number of programmes). Features with an
all-zero profile (never selected) form programme 0, "not selected", and are left out of the clustering.
Programmes are numbered P1, P2, ... in the dendrogram's leaf order, so the heatmap reads top to bottom.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError

__all__ = [
    "coefficient_summary",
    "programmes",
    "programme_scores",
    "membership_table",
    "clustered_heatmap",
    "Programmes",
]

UNSELECTED = "P0"
DEFAULT_THRESHOLD = 0.5  # cosine distance: profiles within about 60° of each other share a programme


def coefficient_summary(coefs: Mapping[str, np.ndarray], feature_names: Sequence[str], *, statistic: str = "mean") -> pd.DataFrame:
    """features × targets matrix from {target: W (spots × features)} (see the module doc for the statistic)."""
    if statistic not in ("mean", "mean_abs"):
        raise S3RInputError(f"statistic must be 'mean' or 'mean_abs', got {statistic!r}")
    if not coefs:
        raise S3RInputError("no fits to summarise; pass at least one target's coefficients")
    names = [str(f) for f in feature_names]
    columns = {}
    for target, W in coefs.items():
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2 or W.shape[1] != len(names):
            raise S3RInputError(
                f"target {target!r}: coefficients of shape {W.shape} do not match the {len(names)} features; "
                "all targets of a sample must use the same features"
            )
        columns[str(target)] = np.abs(W).mean(axis=0) if statistic == "mean_abs" else W.mean(axis=0)
    return pd.DataFrame(columns, index=pd.Index(names, name="feature"))


class Programmes:
    """Result of :func:`programmes`: labels per feature, the tree over the selected ones, their leaf order."""

    def __init__(self, labels: pd.Series, linkage, leaves: list[str]):
        self.labels = labels  # feature -> "P0" | "P1" ...
        self.linkage = linkage  # scipy linkage over the selected features (None with fewer than 2)
        self.leaves = leaves  # selected features in dendrogram order

    @property
    def n_programmes(self) -> int:
        return len({p for p in self.labels if p != UNSELECTED})


def programmes(matrix: pd.DataFrame, n_programmes: int | None = None, *, threshold: float = DEFAULT_THRESHOLD,
               method: str = "average") -> Programmes:
    """Cluster the rows (features) of a features × targets matrix into programmes (module doc)."""
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage

    M = _check_matrix(matrix)
    values = M.to_numpy()
    selected = np.flatnonzero(np.any(values != 0, axis=1))
    labels = pd.Series(UNSELECTED, index=M.index, name="programme", dtype=object)
    if len(selected) == 0:
        return Programmes(labels, None, [])
    if len(selected) == 1:
        labels.iloc[selected[0]] = "P1"
        return Programmes(labels, None, [M.index[selected[0]]])
    if n_programmes is not None and (int(n_programmes) != n_programmes or n_programmes < 1):
        raise S3RInputError(f"report.programmes.n_programmes must be a positive integer, got {n_programmes!r}")
    X = values[selected]
    Z = linkage(X, method=method, metric="cosine", optimal_ordering=True)
    Z[:, 2] = np.maximum(Z[:, 2], 0.0)  # cosine distance of parallel vectors can round to -1e-16
    if n_programmes is not None:
        raw = fcluster(Z, t=min(int(n_programmes), len(selected)), criterion="maxclust")
    else:
        raw = fcluster(Z, t=float(threshold), criterion="distance")
    order = leaves_list(Z)
    renumber: dict[int, int] = {}
    for leaf in order:
        renumber.setdefault(int(raw[leaf]), len(renumber) + 1)
    for pos, j in enumerate(selected):
        labels.iloc[j] = f"P{renumber[int(raw[pos])]}"
    return Programmes(labels, Z, [M.index[selected[i]] for i in order])


def programme_scores(matrix: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """programmes × targets: the mean summary coefficient of each programme's features (P0 left out)."""
    M = _check_matrix(matrix)
    progs = sorted({p for p in labels if p != UNSELECTED}, key=lambda p: int(p[1:]))
    rows = {p: M.loc[labels.index[labels == p]].mean(axis=0) for p in progs}
    table = pd.DataFrame(rows).T if rows else pd.DataFrame(columns=M.columns, dtype=float)
    table.index.name = "programme"
    table.insert(0, "n_features", [int((labels == p).sum()) for p in table.index])
    return table


def membership_table(labels: pd.Series, leaves: Sequence[str] = ()) -> pd.DataFrame:
    """feature, programme: programmes in order, features in dendrogram order within each; P0 last."""
    rank = {f: i for i, f in enumerate(leaves)}
    items = sorted(
        labels.items(),
        key=lambda fp: (fp[1] == UNSELECTED, int(fp[1][1:]), rank.get(fp[0], len(rank)), str(fp[0])),
    )
    return pd.DataFrame(items, columns=["feature", "programme"])


def _check_matrix(matrix) -> pd.DataFrame:
    if not isinstance(matrix, pd.DataFrame):
        raise S3RInputError(f"expected a pandas DataFrame (rows × columns with names), got {type(matrix).__name__}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise S3RInputError(f"the matrix to cluster is empty ({matrix.shape[0]} × {matrix.shape[1]})")
    values = matrix.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        r, c = np.argwhere(~np.isfinite(values))[0]
        raise S3RInputError(f"matrix has NaN/inf at row {matrix.index[r]!r}, column {matrix.columns[c]!r}; fill or drop it")
    return pd.DataFrame(values, index=matrix.index, columns=matrix.columns)


def _order(values: np.ndarray, clusters) -> tuple[np.ndarray, object]:
    """Leaf order of the rows (euclidean, average linkage, optimal ordering) and the linkage; with cluster
    labels given, rows are grouped by cluster (clusters in order of first leaf) and no dendrogram is drawn."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    n = values.shape[0]
    if n < 2:
        return np.arange(n), None
    Z = linkage(values, method="average", metric="euclidean", optimal_ordering=True)
    order = leaves_list(Z)
    if clusters is None:
        return order, Z
    labels = np.asarray(clusters, dtype=object)
    first: dict = {}
    for i in order:
        first.setdefault(labels[i], len(first))
    rank = {int(i): r for r, i in enumerate(order)}
    return np.array(sorted(order, key=lambda i: (first[labels[i]], rank[int(i)]))), None


def _cluster_colors(labels) -> tuple[list, dict]:
    from s3r.report.style import categorical_colors

    levels = list(dict.fromkeys(labels))
    palette = dict(zip(levels, categorical_colors(len(levels))))
    return [palette[v] for v in labels], palette


def clustered_heatmap(matrix: pd.DataFrame, png_path, *, title: str = "", center_zero: bool = True,
                      row_clusters=None, col_clusters=None) -> dict[str, Path]:
    """Clustered heatmap of a named matrix (features × targets, perturbations × genes, ...), PNG + SVG.

    Rows and columns are ordered by hierarchical clustering (euclidean, average linkage, optimal leaf order:
    deterministic) with dendrograms; ``row_clusters`` / ``col_clusters`` (labels aligned to the rows /
    columns, e.g. programmes) group them by label instead and add a colour strip. ``center_zero``: diverging
    colours symmetric about 0 (coefficients); otherwise a sequential map. Returns {"png": ..., "svg": ...}.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    from s3r.report.style import DIVERGING, SEQUENTIAL, save_figure, use_report_style

    M = _check_matrix(matrix)
    for name, clusters, size in (("row_clusters", row_clusters, M.shape[0]), ("col_clusters", col_clusters, M.shape[1])):
        if clusters is not None and len(clusters) != size:
            raise S3RInputError(f"{name} has {len(clusters)} labels for {size} {name[:3]}s; give one label per {name[:3]}")
    if isinstance(row_clusters, pd.Series):
        row_clusters = row_clusters.reindex(M.index).tolist() if set(M.index) <= set(row_clusters.index) else row_clusters.tolist()
    if isinstance(col_clusters, pd.Series):
        col_clusters = col_clusters.reindex(M.columns).tolist() if set(M.columns) <= set(col_clusters.index) else col_clusters.tolist()
    use_report_style()
    values = M.to_numpy()
    row_order, row_Z = _order(values, row_clusters)
    col_order, col_Z = _order(values.T, col_clusters)
    # With a linkage, seaborn orders by it (and draws the dendrogram); with clusters, the order is ours.
    rows = np.arange(M.shape[0]) if row_Z is not None else row_order
    cols = np.arange(M.shape[1]) if col_Z is not None else col_order
    data = M.iloc[rows, cols]
    kwargs: dict = {}
    if center_zero:
        limit = float(np.abs(values).max()) or 1.0
        kwargs.update(cmap=DIVERGING, vmin=-limit, vmax=limit, center=0.0)
    else:
        kwargs.update(cmap=SEQUENTIAL)
    legends = {}
    if row_clusters is not None:
        colors, legends["rows"] = _cluster_colors([row_clusters[i] for i in rows])
        kwargs["row_colors"] = colors
    if col_clusters is not None:
        colors, legends["cols"] = _cluster_colors([col_clusters[i] for i in cols])
        kwargs["col_colors"] = colors
    n_rows, n_cols = data.shape
    width = float(np.clip(3.5 + 0.22 * n_cols, 5.0, 18.0))
    height = float(np.clip(2.5 + 0.2 * n_rows, 4.0, 18.0))
    grid = sns.clustermap(
        data,
        row_cluster=row_Z is not None,
        col_cluster=col_Z is not None,
        row_linkage=row_Z,
        col_linkage=col_Z,
        xticklabels=n_cols <= 60,
        yticklabels=n_rows <= 80,
        figsize=(width, height),
        dendrogram_ratio=(0.12, 0.1),
        cbar_pos=(0.01, 0.85, 0.025, 0.12),
        linewidths=0,
        **kwargs,
    )
    grid.ax_cbar.set_title("coefficient" if center_zero else "value", fontsize=8, loc="left")
    from matplotlib.patches import Patch

    # Cluster keys go where a dendrogram would be: that axis is empty when clusters replace the tree.
    for which, palette in legends.items():
        ax = grid.ax_row_dendrogram if which == "rows" else grid.ax_col_dendrogram
        handles = [Patch(color=c, label=str(lab)) for lab, c in palette.items()]
        ncol = 1 if which == "rows" else min(len(handles), 8)
        ax.legend(handles=handles, loc="center", frameon=False, fontsize=7, ncol=ncol, handlelength=1.0)
    if title:
        grid.figure.suptitle(title, y=1.0)
    grid.ax_heatmap.set_xlabel(str(M.columns.name or ""))
    grid.ax_heatmap.set_ylabel(str(M.index.name or ""))
    plt.setp(grid.ax_heatmap.get_xticklabels(), rotation=90)
    plt.setp(grid.ax_heatmap.get_yticklabels(), rotation=0)
    return save_figure(grid.figure, png_path)

