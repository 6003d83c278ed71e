"""The deconvolution output tables, written by one function per mode for ``s3r deconvolve`` and the workflow.

The report reads these files whichever front end wrote them, so their names, index labels and column order
are fixed here once. The JSON summary's name is :data:`s3r.artifacts.DECONV_SUMMARY`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from s3r.io import write_csv

__all__ = ["edge_table", "write_proportions_tables", "write_components_tables"]


def edge_table(spot_ids, edges, weights) -> pd.DataFrame:
    """The learned edge weights as (spot_a, spot_b, weight) rows, by spot id."""
    ids = np.asarray(spot_ids, dtype=object)
    return pd.DataFrame({"spot_a": ids[edges[:, 0]], "spot_b": ids[edges[:, 1]], "weight": weights})


def write_proportions_tables(model, *, proportions, edge_weights, lambda_choice, transcript_fractions=None,
                             platform_effects=None, lambda_cv=None) -> pd.DataFrame:
    """Tables of a fitted :class:`~s3r.deconv.CellTypeProportions`; returns the λ-choice table (for the JSON)."""
    spots = pd.Index(model.spot_names_, name="spot")
    types = list(model.cell_types_)
    write_csv(pd.DataFrame(model.proportions_, index=spots, columns=types), proportions)
    if transcript_fractions is not None:
        write_csv(pd.DataFrame(model.transcript_fractions_, index=spots, columns=types), transcript_fractions)
    if platform_effects is not None:
        write_csv(
            pd.DataFrame({"platform_effect": model.platform_effects_}, index=pd.Index(model.genes_, name="gene")),
            platform_effects,
        )
    if lambda_cv is not None:
        cv = model.cv_ if model.cv_ is not None else pd.DataFrame(columns=["fold", "lambda", "heldout_loglik_per_count"])
        write_csv(cv, lambda_cv, index=False)
    choice = model.summary_of_choice()
    write_csv(choice, lambda_choice, index=False)
    write_csv(edge_table(model.spot_names_, model.graph_.edges, model.edge_weights_), edge_weights, index=False)
    return choice


def write_components_tables(model, spot_ids, *, proportions, mixture, dictionary=None, edge_weights=None) -> None:
    """Tables of a fitted :class:`~s3r.deconv.Deconvolution`: mixture X, dictionary B, proportions X Bᵀ, edges."""
    components = model.component_names()
    spots = pd.Index(list(spot_ids), name="spot")
    cell_types = pd.Index(model.cell_types_, name="cell_type")
    write_csv(pd.DataFrame(model.mixture_, index=spots, columns=components), mixture)
    if dictionary is not None:
        write_csv(pd.DataFrame(model.dictionary_, index=cell_types, columns=components), dictionary)
    write_csv(pd.DataFrame(model.proportions_, index=spots, columns=cell_types), proportions)
    if edge_weights is not None:
        write_csv(edge_table(spot_ids, model.graph_.edges, model.edge_weights_), edge_weights, index=False)
