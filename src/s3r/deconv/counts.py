"""Count likelihood of spot expression under a mixture of reference cell-type profiles (proportions mode).

A spot with cell-type fractions P_i holds, per gene, μ_ig = a_i · γ_g · Σ_k P_ik m_kg counts: m_k is the mean
profile of one cell of type k in the reference (so types with more RNA contribute more transcripts), γ_g the
gene's platform effect between reference and spatial data, a_i the spot's size. Conditioning on the spot's
library size N_i = Σ_g y_ig removes a_i (as RCTD does with its N_i), and in transcript fractions
V_ik ∝ P_ik·s_k (s_k = Σ_g γ_g m_kg) the expected composition is linear, π_i = Σ_k V_ik R_k with
R_k = γ ∘ m_k / s_k. So

    Poisson:   −Σ_g y_ig log π_ig                                 (+ constants; convex in V)
    NB(θ):     −Σ_g [y_ig log μ_ig − (y_ig + θ) log(μ_ig + θ)],  μ_ig = N_i π_ig

and P_ik ∝ V_ik / s_k maps back to cell fractions. Platform effects are estimated as RCTD does: pool every
spot into one pseudo-bulk, fit the bulk's cell-type composition, and take each gene's log ratio of observed to
predicted bulk expression, shrunk towards 0 under a normal prior on log γ_g.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from s3r.errors import S3RInputError

FAMILIES = ("poisson", "nb")
_NAMED = 5


def _names(items, positions) -> str:
    shown = ", ".join(str(items[int(i)]) for i in positions[:_NAMED])
    return shown + (f" and {len(positions) - _NAMED} more" if len(positions) > _NAMED else "")


@dataclass
class CountData:
    """Matched inputs: counts (spots × genes), per-cell reference means (types × genes), names."""

    counts: np.ndarray
    reference: np.ndarray
    spots: list[str]
    genes: list[str]
    cell_types: list[str]


def match_counts_reference(
    counts, reference, *, source_counts: str = "counts", source_reference: str = "reference", min_genes: int = 5
) -> CountData:
    """Align genes by name and check values; one-line S3RInputError naming the file and the fix."""
    counts = counts if isinstance(counts, pd.DataFrame) else pd.DataFrame(np.asarray(counts, dtype=np.float64))
    reference = reference if isinstance(reference, pd.DataFrame) else pd.DataFrame(np.asarray(reference, dtype=np.float64))
    counts = counts.rename(columns=str, index=str)
    reference = reference.rename(columns=str, index=str)
    shared = set(reference.columns)
    genes = [g for g in counts.columns if g in shared]
    if len(genes) < min_genes:
        raise S3RInputError(
            f"{source_counts} and {source_reference} share {len(genes)} gene name(s) (need ≥ {min_genes}; e.g. "
            f"{counts.columns[0]!r} vs {reference.columns[0]!r}); use the same gene identifiers in both"
        )
    if reference.shape[0] < 2:
        raise S3RInputError(f"{source_reference}: {reference.shape[0]} cell type(s); deconvolution needs at least 2 rows")
    duplicated = reference.index.duplicated()
    if duplicated.any():
        raise S3RInputError(f"{source_reference}: cell type {reference.index[duplicated][0]!r} appears twice; merge or rename it")
    Y = counts[genes].to_numpy(dtype=np.float64, na_value=np.nan)
    M = reference[genes].to_numpy(dtype=np.float64, na_value=np.nan)
    for values, frame, source, rows in ((Y, counts, source_counts, "spot"), (M, reference, source_reference, "cell type")):
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1))
        if bad.size:
            raise S3RInputError(
                f"{source}: {rows}(s) {_names(list(frame.index), bad)} have negative, NaN or infinite values; fix or drop them"
            )
    empty_types = np.flatnonzero(M.sum(axis=1) <= 0)
    if empty_types.size:
        raise S3RInputError(
            f"{source_reference}: cell type(s) {_names(list(reference.index), empty_types)} have no expression over "
            f"the {len(genes)} shared genes; drop them"
        )
    empty_spots = np.flatnonzero(Y.sum(axis=1) <= 0)
    if empty_spots.size:
        raise S3RInputError(
            f"{source_counts}: spot(s) {_names(list(counts.index), empty_spots)} have no counts on the {len(genes)} "
            "genes shared with the reference; drop them"
        )
    return CountData(Y, M, list(counts.index), genes, list(reference.index))


def _bulk_composition(bulk: np.ndarray, profiles: np.ndarray, iterations: int = 500) -> np.ndarray:
    """Multinomial MLE of the pseudo-bulk's transcript fractions (EM; profiles rows sum to 1)."""
    K = profiles.shape[0]
    v = np.full(K, 1.0 / K)
    for _ in range(iterations):
        predicted = v @ profiles
        v = v * (profiles @ np.divide(bulk, predicted, out=np.zeros_like(bulk), where=predicted > 0))
        v /= v.sum()
    return v


MAX_LOG_PLATFORM_EFFECT = float(np.log(100.0))  # beyond 100-fold either way a gene's reference is not its profile


def platform_effects(counts: np.ndarray, reference: np.ndarray, *, prior_sd: float = 0.5, rounds: int = 5) -> np.ndarray:
    """Per-gene γ_g (geometric mean 1): RCTD's pseudo-bulk estimate, shrunk under log γ_g ~ N(0, prior_sd²).

    A gene no reference type shows keeps γ = 1 (its bulk says nothing about a platform effect; its ratio to a
    zero prediction once grew without bound and, through the centring, scaled every other γ to ~0), and
    |log γ| is capped at log 100.

    Alternates the bulk composition (given γ) with γ (given the composition); the shrinkage weight of a gene
    is prior_sd² / (prior_sd² + 1/bulk_g), 1/bulk_g being the Poisson variance of its log bulk.
    """
    bulk = counts.sum(axis=0)
    shown = reference.max(axis=0) > 0  # a gene no reference type shows says nothing about its platform effect
    log_gamma = np.zeros(reference.shape[1])
    for _ in range(rounds):
        scaled = reference * np.exp(log_gamma)
        profiles = scaled / scaled.sum(axis=1, keepdims=True)
        v = _bulk_composition(bulk / bulk.sum(), profiles)
        # predicted bulk in transcripts of the current γ, then the ratio to the reference's own γ = 1 profile
        composition = v @ profiles
        cells = v / scaled.sum(axis=1)  # bulk cell abundances (up to scale)
        predicted = cells @ reference  # with γ = 1
        predicted *= bulk.sum() / predicted.sum()
        raw = np.zeros_like(bulk, dtype=np.float64)
        raw[shown] = np.log(np.maximum(bulk[shown], 0.5) / predicted[shown])
        raw = np.clip(raw, -MAX_LOG_PLATFORM_EFFECT, MAX_LOG_PLATFORM_EFFECT)
        shrink = prior_sd**2 / (prior_sd**2 + 1.0 / np.maximum(bulk, 1.0))
        updated = np.where(shown, shrink * (raw - np.average(raw, weights=composition)), 0.0)
        if np.max(np.abs(updated - log_gamma)) < 1e-8:
            log_gamma = updated
            break
        log_gamma = updated
    if shown.any():
        log_gamma[shown] -= log_gamma[shown].mean()
    return np.exp(log_gamma)


def bulk_start(Y: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Every spot starts at the pseudo-bulk's transcript fractions, kept off the simplex's faces."""
    v = _bulk_composition(Y.sum(axis=0), profiles, iterations=200)
    v = 0.9 * v + 0.1 / v.size
    return v / v.sum()


def estimate_nb_theta(counts: np.ndarray, means: np.ndarray) -> float:
    """Global NB dispersion θ by moments, Var = μ + μ²/θ, from a first fit's means (≥ 1e-2, ≤ 1e6)."""
    excess = float(((counts - means) ** 2 - means).sum())
    square = float((means**2).sum())
    if excess <= 0 or square <= 0:
        return 1e6
    return float(np.clip(square / excess, 1e-2, 1e6))


class CountTerm:
    """−log-likelihood of spot counts given transcript fractions V (K × n, component-major), per spot.

    ``profiles`` (K × G) have rows summing to 1 over the genes used; ``scale`` divides the whole term (the
    median library size) so that gradients are O(1) whatever the depth and λ is unit-free.
    """

    def __init__(self, counts_t: torch.Tensor, profiles: torch.Tensor, *, family: str = "poisson",
                 theta: float | None = None, scale: float = 1.0):
        if family not in FAMILIES:
            raise S3RInputError(f"unknown family {family!r}; choose poisson or nb")
        self.Y = counts_t  # (G, n)
        self.R = profiles  # (K, G)
        self.family = family
        self.theta = float(theta) if theta is not None else None
        self.scale = float(scale)
        self.library = counts_t.sum(dim=0)  # (n,)
        self.row_norms = (profiles * profiles).sum(dim=0)  # ‖R_:g‖², for the curvature bound
        if family == "poisson":
            safe = torch.where(self.Y > 0, self.Y, torch.ones_like(self.Y))
            library = self.library.clamp_min(torch.finfo(self.Y.dtype).tiny)
            self.constant = (self.Y * torch.log(safe / library)).sum(dim=0)  # saturated part: loss ≥ 0
        else:
            self.constant = torch.zeros_like(self.library)
        # per spot, a bound on the size of the sums that make the loss (Z ≥ the smallest profile entry): the
        # scale of their rounding, which the solver's descent test must tolerate (in float32 above all)
        smallest = profiles.min().clamp_min(torch.finfo(profiles.dtype).tiny)
        spread = self.library * torch.log(1.0 / smallest).abs()
        if family == "nb":
            spread = spread + (self.library + self.theta) * torch.log1p(self.library / self.theta).abs() if self.theta else spread
        self.loss_magnitude = (spread + self.constant.abs()) / self.scale

    def composition(self, V: torch.Tensor) -> torch.Tensor:
        """Z = RᵀV (G, n), written into one of two reused buffers in turn: a fresh genes × spots tensor per
        call was an mmap and a page-faulting first pass (a third of the product's cost at 10⁵ spots). A result
        stays valid until the next-but-one call; the solvers hold only the current and the candidate one."""
        buffers = getattr(self, "_compositions", None)
        shape = (self.R.shape[1], V.shape[1])
        if buffers is None or buffers[0].shape != shape or buffers[0].dtype != V.dtype or buffers[0].device != V.device:
            buffers = self._compositions = [V.new_empty(shape), V.new_empty(shape)]
            self._turn = 0
        self._turn ^= 1
        return torch.matmul(self.R.T, V, out=buffers[self._turn])

    def loss(self, V: torch.Tensor, Z: torch.Tensor | None = None) -> torch.Tensor:
        """Per-spot loss (n,), divided by ``scale``; Poisson as a deviance/2 (0 for a perfect fit)."""
        Z = self.composition(V) if Z is None else Z
        if self.family == "poisson":  # in one scratch buffer: the genes × spots passes are the iteration's cost
            value = -torch.log(Z, out=self._scratch(Z)).mul_(self.Y).sum(dim=0) + self.constant
        else:
            mu = Z * self.library
            value = -(self.Y * torch.log(mu) - (self.Y + self.theta) * torch.log(mu + self.theta)).sum(dim=0)
        return value / self.scale

    def gradient(self, V: torch.Tensor, Z: torch.Tensor | None = None) -> torch.Tensor:
        Z = self.composition(V) if Z is None else Z
        if self.family == "poisson":
            return (self.R @ torch.div(self.Y, Z, out=self._scratch(Z))).neg_() / self.scale
        mu = Z * self.library
        dZ = -self.Y / Z + self.library * (self.Y + self.theta) / (mu + self.theta)
        return (self.R @ dZ) / self.scale

    def _scratch(self, like: torch.Tensor) -> torch.Tensor:
        """A genes × spots buffer reused by every loss and gradient: a fresh one per call costs an allocation
        and a page-faulting first pass over 10⁷–10⁸ entries, as much as the arithmetic."""
        buffer = getattr(self, "_buffer", None)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self._buffer = torch.empty_like(like)
        return buffer

    def curvature(self, V: torch.Tensor, Z: torch.Tensor | None = None, *, power_steps: int = 6) -> torch.Tensor:
        """Per-spot estimate of the Hessian's norm on the simplex's tangent space (Σ_k d_k = 0).

        The Poisson Hessian is R diag(y/Z²) Rᵀ (NB's is smaller). Its trace Σ_g y_g‖R_:g‖²/Z_g² bounds it but
        overshoots by up to K when profiles are alike, and its top direction (V itself) leaves the simplex, so a
        few power iterations on the tangent space give the steps that matter; backtracking raises any estimate
        that is too low, and the trace caps it.
        """
        Z = self.composition(V) if Z is None else Z
        weights = self.Y / (Z * Z)
        if self.family == "nb":  # NB's second derivative in Z: y/Z² − N²(y+θ)/(NZ+θ)², far below y/Z² for large y
            mu_theta = Z * self.library + self.theta
            weights = (weights - self.library**2 * (self.Y + self.theta) / (mu_theta * mu_theta)).clamp_min(0.0)
        trace = (self.row_norms @ weights) / self.scale
        K = V.shape[0]
        if K < 2:
            return trace
        generator = torch.Generator(device="cpu").manual_seed(0)
        d = torch.randn((K, V.shape[1]), generator=generator, dtype=V.dtype).to(V.device)
        estimate = trace
        for _ in range(power_steps):
            d = d - d.mean(dim=0, keepdim=True)
            norm = d.norm(dim=0).clamp_min(1e-300)
            d = d / norm
            Hd = self.R @ (weights * (self.R.T @ d)) / self.scale
            Hd = Hd - Hd.mean(dim=0, keepdim=True)
            estimate = (d * Hd).sum(dim=0)  # Rayleigh quotient, a lower estimate of the top eigenvalue
            d = Hd
        return torch.minimum(1.5 * estimate, trace).clamp_min(1e-6)


def profiles_from_reference(reference: np.ndarray, gamma: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(R (K × G) rows summing to 1, sizes s_k): platform-scaled profiles with a uniform share ``floor`` mixed
    in, so a gene one type never shows costs a finite amount."""
    scaled = reference * gamma
    sizes = scaled.sum(axis=1)
    G = reference.shape[1]
    profiles = (1.0 - floor) * scaled / sizes[:, None] + floor / G
    return profiles, sizes


def cell_fractions(transcript_fractions: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """P_ik ∝ V_ik / s_k: transcript fractions (spots × types) to fractions of cells."""
    cells = transcript_fractions / sizes
    return cells / cells.sum(axis=1, keepdims=True)


def transcript_fractions(cell_fraction: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The inverse of :func:`cell_fractions`."""
    transcripts = cell_fraction * sizes
    return transcripts / transcripts.sum(axis=1, keepdims=True)


def reference_from_h5ad(path, cell_type_key: str = "cell_type", *, layer: str | None = None, min_cells: int = 1) -> pd.DataFrame:
    """Mean expression per cell of each type (types × genes) from single cells in an .h5ad.

    ``.X`` (or ``layer``) should hold counts; per-cell means keep each type's RNA content, which turns
    transcript fractions into fractions of cells.
    """
    import anndata
    import scipy.sparse as sp

    if not Path(path).is_file():
        raise S3RInputError(f"{path}: reference .h5ad not found; check the path (--reference, the sheet's 'reference' column)")
    try:
        adata = anndata.read_h5ad(path)
    except (OSError, KeyError, ValueError) as err:
        raise S3RInputError(f"{path}: cannot read the reference .h5ad ({str(err).splitlines()[0]}); check the file") from None
    if cell_type_key not in adata.obs:
        columns = ", ".join(map(str, list(adata.obs.columns)[:8])) or "none"
        raise S3RInputError(f"{path}: no .obs[{cell_type_key!r}] with cell types (columns: {columns}); pass --cell-type-key")
    if layer is not None and layer not in adata.layers:
        raise S3RInputError(f"{path}: no layer {layer!r}; choose one of {', '.join(adata.layers) or '.X only'}")
    matrix = adata.layers[layer] if layer is not None else adata.X
    labels = adata.obs[cell_type_key].astype("string")
    known = labels.notna().to_numpy()
    types = sorted(labels[known].unique())
    if len(types) < 2:
        raise S3RInputError(f"{path}: .obs[{cell_type_key!r}] has {len(types)} cell type(s); a reference needs at least 2")
    codes = pd.Categorical(labels[known], categories=types).codes
    indicator = sp.csr_matrix((np.ones(known.sum()), (codes, np.flatnonzero(known))), shape=(len(types), adata.n_obs))
    n_cells = np.asarray(indicator.sum(axis=1)).ravel()
    small = np.flatnonzero(n_cells < min_cells)
    if small.size:
        raise S3RInputError(f"{path}: cell type(s) {_names(types, small)} have fewer than {min_cells} cells; merge or drop them")
    sums = indicator @ (matrix if sp.issparse(matrix) else np.asarray(matrix))
    means = np.asarray(sums.todense() if sp.issparse(sums) else sums) / n_cells[:, None]
    return pd.DataFrame(means, index=pd.Index(types, name="cell_type"), columns=[str(g) for g in adata.var_names])
