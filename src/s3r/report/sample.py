"""The per-sample report: spatial domains over all targets' coefficient maps, and coefficient programmes.

Reads each target's ``coefficients.npz`` (written by ``s3r fit`` / the workflow's fit_final) and writes into
``out_dir``: ``domains.png`` (+ SVG) and ``domains.tsv`` (spot, domain); ``programmes.png`` (+ SVG, the
clustered features × targets heatmap), ``programmes.tsv`` (feature, programme), ``programme_scores.tsv``
(programme × target) and ``coefficient_summary.tsv`` (the features × targets matrix that was clustered).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from s3r.errors import S3RInputError

__all__ = ["read_coefficients", "sample_report"]


def read_coefficients(npz_paths: Mapping[str, str | Path]):
    """{target: W}, coordinates, spot ids and feature names from several fits of one sample (checked to agree)."""
    coefs, ref = {}, None
    for target, path in npz_paths.items():
        path = Path(path)
        if not path.is_file():
            raise S3RInputError(f"{path}: coefficients not found; run the fit for target {target!r} first")
        with np.load(path, allow_pickle=False) as f:
            W, coords = f["coef"], f["coords"]
            spots, features = [str(s) for s in f["spot_ids"]], [str(n) for n in f["feature_names"]]
        if ref is None:
            ref = (path, coords, spots, features)
        elif spots != ref[2] or features != ref[3]:
            what = "spots" if spots != ref[2] else "features"
            raise S3RInputError(
                f"{path}: its {what} differ from {ref[0]}'s; the targets of one sample must be fitted on the same data"
            )
        coefs[str(target)] = W
    if ref is None:
        raise S3RInputError("no fits given; pass at least one target's coefficients.npz")
    return coefs, ref[1], ref[2], ref[3]


def sample_report(npz_paths: Mapping[str, str | Path], out_dir, *, k: int | None = None,
                  k_range: tuple[int, int] = (2, 8), n_programmes: int | None = None, threshold: float | None = None,
                  seed: int = 0, title: str = "", tissue=None) -> dict[str, Path]:
    """Domains and programmes of one sample from {target: coefficients.npz}; returns {name: path}. ``tissue``: a
    tissue image (s3r.report.tissue) under the domain map."""
    from s3r.io import write_csv
    from s3r.report.domains import domain_table, plot_domains, spot_domains, stack_coefficients
    from s3r.report.programmes import (
        DEFAULT_THRESHOLD,
        clustered_heatmap,
        coefficient_summary,
        membership_table,
        programme_scores,
        programmes,
    )

    coefs, coords, spots, features = read_coefficients(npz_paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    labels, k_used, silhouettes = spot_domains(stack_coefficients(list(coefs.values())), k=k, k_range=k_range, seed=seed)
    write_csv(domain_table(spots, labels), out / "domains.tsv", sep="\t", index=False)
    paths["domains_tsv"] = out / "domains.tsv"
    how = "fixed k" if k is not None else "k by silhouette"
    # targets without any non-zero coefficient (a "no effect" verdict's intercept-only fit) carry no domain information:
    # the title says on how many of the targets the domains rest, and when on none, that in words
    effect = {t: W for t, W in coefs.items() if np.any(W)}
    with_effect = len(effect)
    basis = (f"over {with_effect} of {len(coefs)} targets with a non-zero coefficient" if with_effect
             else f"NONE of the {len(coefs)} targets has a non-zero coefficient: no domains")
    figs = plot_domains(coords, labels, out / "domains.png", title=f"{title} — domains ({how}), {basis}" if title else basis,
                        silhouette_by_k=silhouettes if k is None else None, tissue=tissue)
    paths.update({f"domains_{fmt}": p for fmt, p in figs.items()})

    # the programmes cluster the targets with an effect: an all-zero target is a white column (its verdict is in the
    # summary table); with none, every target, so the heatmap still shows what there is
    effect = effect or coefs
    matrix = coefficient_summary(effect, features)
    result = programmes(matrix, n_programmes, threshold=DEFAULT_THRESHOLD if threshold is None else threshold)
    write_csv(matrix, out / "coefficient_summary.tsv", sep="\t")
    write_csv(membership_table(result.labels, result.leaves), out / "programmes.tsv", sep="\t", index=False)
    write_csv(programme_scores(matrix, result.labels), out / "programme_scores.tsv", sep="\t")
    paths.update({
        "coefficient_summary": out / "coefficient_summary.tsv",
        "programmes_tsv": out / "programmes.tsv",
        "programme_scores": out / "programme_scores.tsv",
    })
    # Never-selected features would only add white rows; the heatmap shows the programmes.
    shown = result.labels.index[result.labels != "P0"]
    heat = matrix.loc[shown] if len(shown) else matrix
    heat.columns.name, heat.index.name = "target", "feature"
    figs = clustered_heatmap(
        heat,
        out / "programmes.png",
        title=(f"{title} — " if title else "") + f"coefficient programmes ({result.n_programmes})\n"
              + (f"mean coefficient over spots; {len(effect)} of {len(coefs)} targets (with an effect)" if with_effect
               else "every coefficient of every target is zero: no programmes"),
        center_zero=True,
        row_clusters=result.labels.loc[heat.index],
    )
    paths.update({f"programmes_{fmt}": p for fmt, p in figs.items()})
    return paths
