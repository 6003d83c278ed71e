"""Per-spot cell-type likelihood scores S (spots × cell types): checked as given, or computed from counts.

The model only uses S up to a positive factor per spot (that factor adds a constant to −Σ log z), so scores
may be likelihoods on any per-spot scale, e.g. RCTD singlet scores exponentiated, but never log-likelihoods.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3r.errors import S3RInputError

_NAMED = 5


def _names(items: Sequence, positions: np.ndarray) -> str:
    shown = ", ".join(str(items[int(i)]) for i in positions[:_NAMED])
    return shown + (f" and {len(positions) - _NAMED} more" if len(positions) > _NAMED else "")


def validate_scores(scores, *, source: str = "scores") -> tuple[np.ndarray, list[str], list[str]]:
    """(values (n, K) float64, spot names, cell-type names); one-line S3RInputError naming what is wrong."""
    if isinstance(scores, pd.DataFrame):
        spots = [str(s) for s in scores.index]
        types = [str(c) for c in scores.columns]
        non_numeric = [c for c, t in zip(types, scores.dtypes) if not pd.api.types.is_numeric_dtype(t)]
        if non_numeric:
            raise S3RInputError(f"{source}: column(s) {', '.join(non_numeric[:_NAMED])} are not numeric; scores must be numbers (spots × cell types)")
        values = scores.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = np.array(scores, dtype=np.float64)
        if values.ndim != 2:
            raise S3RInputError(f"{source}: expected a 2-D spots × cell types table, got shape {values.shape}")
        spots = [f"spot {i}" for i in range(values.shape[0])]
        types = [f"type_{k + 1}" for k in range(values.shape[1])]
    n, K = values.shape
    if n == 0 or K == 0:
        raise S3RInputError(f"{source}: empty table ({n} spots × {K} cell types)")
    if K < 2:
        raise S3RInputError(f"{source}: only one cell-type column ({types[0]}); deconvolution needs at least 2")
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad_rows.size:
        raise S3RInputError(f"{source}: spot(s) {_names(spots, bad_rows)} have NaN or infinite scores; drop them or fill the missing values")
    negative = np.flatnonzero((values < 0).any(axis=1))
    if negative.size:
        hint = (
            " (these look like log-likelihoods: pass exp(score − row max) instead)"
            if (values <= 0).all()
            else ""
        )
        raise S3RInputError(f"{source}: spot(s) {_names(spots, negative)} have negative scores{hint}; scores must be likelihoods ≥ 0")
    empty = np.flatnonzero(values.sum(axis=1) <= 0)
    if empty.size:
        raise S3RInputError(f"{source}: spot(s) {_names(spots, empty)} score 0 for every cell type; drop them or add a small pseudo-score")
    duplicated = pd.Index(spots).duplicated()
    if isinstance(scores, pd.DataFrame) and duplicated.any():
        raise S3RInputError(f"{source}: spot id(s) {_names(spots, np.flatnonzero(duplicated))} appear more than once; make spot ids unique")
    return values, spots, types


def poisson_scores(
    counts: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    temperature: float = 1.0,
    floor: float = 1e-3,
    source_counts: str = "counts",
    source_reference: str = "reference",
) -> pd.DataFrame:
    """Likelihood of each spot's counts under each cell type's mean profile, Poisson per gene.

    With profile r_k normalised to sum 1 and library size N_i, log p(y_i | k) = Σ_g y_ig log r_kg + terms
    that do not depend on k, so S_ik = exp((ℓ_ik − max_k ℓ_ik) / temperature). ``floor`` mixes a uniform
    profile into each r_k (weight ``floor``) so a gene a reference type never expresses costs a finite amount.
    ``counts`` is spots × genes, ``reference`` cell types × genes; genes are matched by name.
    """
    if temperature <= 0 or not np.isfinite(temperature):
        raise S3RInputError(f"temperature must be a positive number, not {temperature}")
    if not 0 < floor < 1:
        raise S3RInputError(f"floor must lie in (0, 1), not {floor}")
    genes = [g for g in map(str, counts.columns) if g in set(map(str, reference.columns))]
    if not genes:
        raise S3RInputError(
            f"{source_counts} and {source_reference} share no gene names (e.g. {counts.columns[0]!r} vs "
            f"{reference.columns[0]!r}); use the same gene identifiers (symbols or Ensembl ids) in both"
        )
    counts = counts.rename(columns=str)[genes]
    reference = reference.rename(columns=str)[genes]
    for frame, source, rows in ((counts, source_counts, "spot"), (reference, source_reference, "cell type")):
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1))
        if bad.size:
            raise S3RInputError(f"{source}: {rows}(s) {_names(list(frame.index), bad)} have negative, NaN or infinite values; fix or drop them")
    profiles = reference.to_numpy(dtype=np.float64)
    totals = profiles.sum(axis=1, keepdims=True)
    empty = np.flatnonzero(totals.ravel() <= 0)
    if empty.size:
        raise S3RInputError(f"{source_reference}: cell type(s) {_names(list(reference.index), empty)} have no expression over the shared genes; drop them")
    n_genes = len(genes)
    log_profiles = np.log((1.0 - floor) * profiles / totals + floor / n_genes)
    y = counts.to_numpy(dtype=np.float64)
    log_likelihood = np.asarray(sp.csr_matrix(y) @ log_profiles.T) if sp.issparse(y) else y @ log_profiles.T
    log_likelihood = (log_likelihood - log_likelihood.max(axis=1, keepdims=True)) / temperature
    return pd.DataFrame(np.exp(log_likelihood), index=counts.index, columns=reference.index.map(str))
