"""Figures of a perturb-seq screen (seed 002): penalty selection, the clustered effect heatmaps, the programme
dot plot and programme enrichment. Each takes the tables the workflow writes, so a figure can be redrawn from
results without refitting; each writes a PNG and an SVG beside it (atomically, deterministic style).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError
from s3r.perturb_analysis import module_label, module_number, programme_label
from s3r.report.programmes import clustered_heatmap

__all__ = ["plot_alpha_performance", "plot_effects_heatmap", "plot_programme_shifts", "plot_dotplot", "plot_enrichment",
           "shift_matrix"]


def plot_alpha_performance(table: pd.DataFrame, png_path, *, title: str = ""):
    """Held-out deviance explained (R² for the gaussian) per penalty over all genes — median and quartiles —
    beside the training value and the number of genes CV chose at each penalty: the seed's α grid view, but
    every gene's choice is shown rather than one α for all."""
    import matplotlib.pyplot as plt

    from s3r.report.style import save_figure, use_report_style

    use_report_style()
    x = table["lambda_ratio"].to_numpy()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.0, 5.5), sharex=True, height_ratios=(3, 1.3))
    held = table["heldout_deviance_explained_median"].to_numpy(dtype=float)
    if np.isfinite(held).any():
        ax.fill_between(x, table["heldout_deviance_explained_q25"], table["heldout_deviance_explained_q75"], color="C0", alpha=0.25,
                        label="held-out, quartiles over genes")
        ax.plot(x, held, "o-", color="C0", ms=3, label="held-out (CV), median")
    ax.plot(x, table["train_deviance_explained_median"], "s--", color="C1", ms=3, label="training, median")
    ax.set_xscale("log")
    ax.set_ylabel("deviance explained")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or "penalty selection")
    ax2.bar(x, table["n_genes_chosen"], width=x * 0.25, color="C2")
    ax2.set_ylabel("genes choosing λ")
    ax2.set_xlabel("λ / λ_max (each gene's path)")
    ax3 = ax2.twinx()
    ax3.plot(x, table["mean_nonzero_effects"], color="0.3", lw=1)
    ax3.set_ylabel("non-zero effects / gene", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, png_path)


def plot_effects_heatmap(coef: pd.DataFrame, programmes: pd.Series, modules: pd.Series, png_path, *, title: str = ""):
    """genes × perturbations coefficients, genes grouped by programme and perturbations by module (the seed's
    first clustered heatmap)."""
    W = coef.T
    W.index.name, W.columns.name = "gene", "perturbation"
    return clustered_heatmap(W, png_path, title=title or "perturbation effects",
                             row_clusters=[programme_label(p) for p in pd.Series(programmes).reindex(W.index)],
                             col_clusters=[module_label(m) for m in pd.Series(modules).reindex(W.columns)])


def shift_matrix(tests: pd.DataFrame, value: str = "mean_difference") -> pd.DataFrame:
    """programmes × perturbations of one column of the programme-test table."""
    if tests.empty:
        raise S3RInputError("the programme-test table is empty (no programme: no perturbation moved any gene); nothing to draw")
    M = tests.pivot(index="programme", columns="perturbation", values=value)
    M = M.loc[sorted(M.index, key=lambda p: int(str(p)[1:]) if str(p)[1:].isdigit() else 0)]
    M.index.name, M.columns.name = "programme", "perturbation"
    return M


def plot_programme_shifts(tests: pd.DataFrame, png_path, *, title: str = ""):
    """programmes × perturbations: mean per-cell programme score minus the control's, clustered both ways."""
    return clustered_heatmap(shift_matrix(tests), png_path, title=title or "programme score minus control")


def plot_dotplot(tests: pd.DataFrame, png_path, *, modules: pd.Series | None = None, title: str = "", best_p: float = 1e-50):
    """Dot plot: colour = mean programme score minus control, size = −log10 BH-adjusted p (capped at
    ``best_p``); perturbations ordered by module, then by clustering within it."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from s3r.report.style import DIVERGING, save_figure, use_report_style

    D = shift_matrix(tests)
    P = shift_matrix(tests, "p_adj").reindex(index=D.index, columns=D.columns)
    order = list(D.columns)
    if D.shape[1] > 1:
        from scipy.cluster.hierarchy import leaves_list, linkage

        order = [D.columns[i] for i in leaves_list(linkage(D.T.fillna(0).to_numpy(), "average", optimal_ordering=True))]
    if modules is not None:
        m = pd.Series(modules).reindex(order).fillna(0).map(module_number)
        rank = {p: i for i, p in enumerate(order)}
        order = sorted(order, key=lambda p: (m[p] == 0, m[p], rank[p]))
    D, P = D[order], P[order]
    use_report_style()
    logp = -np.log10(np.clip(P.to_numpy(dtype=float), best_p, 1.0))
    size = 8 + 160 * logp / max(-np.log10(best_p), 1e-9)
    lim = float(np.nanmax(np.abs(D.to_numpy()))) or 1.0
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 + 0.3 * D.shape[1]), max(3.0, 1.2 + 0.35 * D.shape[0])))
    yy, xx = np.meshgrid(np.arange(D.shape[0]), np.arange(D.shape[1]), indexing="ij")
    sc = ax.scatter(xx.ravel(), yy.ravel(), s=size.ravel(), c=D.to_numpy().ravel(), cmap=DIVERGING, vmin=-lim, vmax=lim,
                    edgecolors="0.3", linewidths=0.3)
    ax.set_xticks(range(D.shape[1]), [f"{p} ({module_label(modules.get(p, 0))})" if modules is not None else p for p in D.columns],
                  rotation=90, fontsize=7)
    ax.set_yticks(range(D.shape[0]), D.index, fontsize=8)
    ax.set_xlim(-0.7, D.shape[1] - 0.3)
    ax.set_ylim(D.shape[0] - 0.5, -0.5)
    fig.colorbar(sc, ax=ax, fraction=0.03, pad=0.01).set_label("mean score − control", fontsize=8)
    keys = [2, 10, 50] if best_p <= 1e-50 else [1, 2, 5]
    handles = [Line2D([], [], marker="o", ls="", color="0.5", markersize=np.sqrt(8 + 160 * k / -np.log10(best_p)), label=f"{k}")
               for k in keys]
    ax.legend(handles=handles, title="−log10 adj. p", loc="upper left", bbox_to_anchor=(1.08, 1.0), frameon=False, fontsize=7,
              title_fontsize=7)
    ax.set_title(title or "programme scores per perturbation (minus control)")
    fig.tight_layout()
    return save_figure(fig, png_path)


def plot_enrichment(table: pd.DataFrame, png_path, *, top: int = 5, title: str = ""):
    """Per programme, the ``top`` gene sets by p-value as bars of −log10 adjusted p (dashed: 0.05). With no GMT
    or no set tested, an empty-but-valid figure says so."""
    import matplotlib.pyplot as plt

    from s3r.report.style import save_figure, use_report_style

    use_report_style()
    progs = list(dict.fromkeys(table["programme"])) if len(table) else []
    if not progs:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no enrichment tested (no GMT file given, or no gene set overlaps the tested genes)", ha="center", va="center", fontsize=8)
        return save_figure(fig, png_path)
    progs = sorted(progs, key=lambda p: int(p[1:]))
    fig, axes = plt.subplots(len(progs), 1, figsize=(6.5, 0.6 + 0.32 * top * len(progs)), squeeze=False)
    for ax, p in zip(axes[:, 0], progs):
        sub = table[table["programme"] == p].nsmallest(top, "p_value")
        vals = -np.log10(np.clip(sub["p_adj"].to_numpy(dtype=float), 1e-300, 1))
        ax.barh(range(len(sub)), vals, color=np.where(sub["p_adj"] < 0.05, "C3", "0.7"))
        ax.set_yticks(range(len(sub)), [f"{g} ({o}/{s})" for g, o, s in zip(sub["gene_set"], sub["overlap"], sub["set_size"])], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(-np.log10(0.05), color="0.3", ls="--", lw=0.8)
        ax.set_title(f"{p} ({int(sub['programme_size'].iloc[0])} genes)", fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("−log10 BH-adjusted p (hypergeometric)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, png_path)
