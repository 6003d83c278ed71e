"""Ground truth for deconvolution: piecewise-constant mixtures over the paper's regions on a real tissue.

Generative model, chosen so that the fitted model is exactly right and differences between fits come from
the estimator alone:

- regions: the bundled S3R layouts placed over a geometry (nearest labelled point), as in s3r.simulate;
- true mixtures X*: region r is dominated by component r mod D (weight ``purity``), the rest a Dirichlet draw;
- true dictionary B*: each component a sparse-ish Dirichlet(0.3) distribution over the K cell types;
- each spot shows one cell type k_i ~ X*_i B*ᵀ; its K noisy scores are ℓ_i = s·e_{k_i} + N(0, I), and the
  likelihood scores are S_ik = exp(s·ℓ_ik − max), which is exactly p(ℓ_i | type k) up to a per-spot factor.

One spot's scores say little about its mixture, so pooling neighbours (the spatial term) is what recovers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from s3r.errors import S3RInputError
from s3r.simulate import GEOMETRIES, LAYOUTS, load_geometry, load_layout


@dataclass
class DeconvolutionSimulation:
    scores: np.ndarray  # (n, K) likelihood scores S
    coords: np.ndarray  # (n, 2) in the geometry's own units
    mixture: np.ndarray  # (n, D) true X*
    dictionary: np.ndarray  # (K, D) true B*
    regions: np.ndarray  # (n,) layout region ids
    shown_types: np.ndarray  # (n,) the cell type each spot's scores were drawn from
    geometry: str
    layout: str
    signal: float
    seed: int

    @property
    def proportions(self) -> np.ndarray:
        """True cell-type proportions X* B*ᵀ (n × K)."""
        return self.mixture @ self.dictionary.T

    @property
    def cell_types(self) -> list[str]:
        return [f"type_{k + 1}" for k in range(self.scores.shape[1])]

    @property
    def spot_ids(self) -> list[str]:
        return [f"spot_{i + 1}" for i in range(self.scores.shape[0])]


def _unit_square(coords: np.ndarray) -> np.ndarray:
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = float((high - low).max())
    return (coords - low) / span + (1.0 - (high - low) / span) / 2.0


def simulate_deconvolution(
    geometry: str = "dlpfc_151507",
    layout: str = "three_regions",
    *,
    n_cell_types: int = 19,
    n_components: int = 3,
    n_spots: int | None = None,
    signal: float = 2.0,
    purity: float = 0.8,
    seed: int = 0,
) -> DeconvolutionSimulation:
    """Simulate scores on a bundled geometry (or ``"uniform"`` with ``n_spots`` points in the unit square)."""
    if n_cell_types < 2 or n_components < 1:
        raise S3RInputError("simulation: need n_cell_types ≥ 2 and n_components ≥ 1")
    if not 0.0 <= purity <= 1.0:
        raise S3RInputError(f"simulation: purity must lie in [0, 1], not {purity}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
    if geometry == "uniform":
        if n_spots is None:
            raise S3RInputError("simulation: geometry='uniform' needs n_spots")
        coords = rng.uniform(0.0, 1.0, size=(int(n_spots), 2))
    elif geometry in GEOMETRIES:
        coords = load_geometry(geometry)
        if n_spots is not None:
            if n_spots > len(coords):
                raise S3RInputError(f"simulation: n_spots={n_spots} exceeds the {len(coords)} spots of {geometry}")
            coords = coords[np.sort(rng.choice(len(coords), size=int(n_spots), replace=False))]
    else:
        raise S3RInputError(f"unknown geometry {geometry!r}; choose 'uniform' or one of {', '.join(GEOMETRIES)}")
    if layout not in LAYOUTS:
        raise S3RInputError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    reference = load_layout(layout)
    _, nearest = cKDTree(reference[["x", "y"]].to_numpy()).query(_unit_square(coords))
    regions = reference["cluster"].to_numpy()[nearest].astype(np.int64)
    n_regions = int(reference["cluster"].max()) + 1

    region_mixtures = (1.0 - purity) * rng.dirichlet(np.ones(n_components), size=n_regions)
    region_mixtures[np.arange(n_regions), np.arange(n_regions) % n_components] += purity
    dictionary = rng.dirichlet(np.full(n_cell_types, 0.3), size=n_components).T
    mixture = region_mixtures[regions]
    proportions = mixture @ dictionary.T

    cumulative = proportions.cumsum(axis=1)
    draws = rng.uniform(size=(len(coords), 1)) * cumulative[:, -1:]
    shown = np.minimum((cumulative < draws).sum(axis=1), n_cell_types - 1)
    noisy = rng.standard_normal((len(coords), n_cell_types))
    noisy[np.arange(len(coords)), shown] += signal
    log_scores = signal * noisy
    scores = np.exp(log_scores - log_scores.max(axis=1, keepdims=True))
    return DeconvolutionSimulation(
        scores, coords, mixture, dictionary, regions, shown, geometry, layout, float(signal), int(seed)
    )


@dataclass
class CountSimulation:
    """Spot counts from known cell-type proportions and a reference (the proportions mode's model)."""

    counts: np.ndarray  # (n, G)
    reference: np.ndarray  # (K, G) mean expression of one cell of each type (as a reference would give it)
    proportions: np.ndarray  # (n, K) true fractions of cells
    coords: np.ndarray  # (n, 2)
    regions: np.ndarray  # (n,)
    platform_effects: np.ndarray  # (G,) true γ applied to the spatial counts
    seed: int

    @property
    def cell_types(self) -> list[str]:
        return [f"type_{k + 1}" for k in range(self.reference.shape[0])]

    @property
    def genes(self) -> list[str]:
        return [f"gene_{g + 1}" for g in range(self.reference.shape[1])]

    @property
    def spot_ids(self) -> list[str]:
        return [f"spot_{i + 1}" for i in range(self.counts.shape[0])]


def simulate_counts(
    n_spots: int = 400,
    n_types: int = 5,
    n_genes: int = 60,
    *,
    n_regions: int = 4,
    spatial: bool = True,
    depth: float = 150.0,
    platform_sd: float = 0.0,
    concentration: float = 1.0,
    theta: float | None = None,
    seed: int = 0,
) -> CountSimulation:
    """Spots on a jittered grid in the unit square; counts ~ Poisson(a_i · γ ∘ Σ_k n_ik m_k).

    ``spatial``: proportions are constant within ``n_regions`` vertical bands (one Dirichlet draw per band)
    with sharp borders; otherwise every spot draws its own, so no spatial term can help. Cell types differ
    in RNA content (sizes 0.5–2), so cell and transcript fractions differ. Library sizes vary 3-fold around
    ``depth``; ``platform_sd`` is the sd of log γ (0: reference and spots on the same platform); ``theta``
    makes the counts negative binomial (gamma–Poisson, Var = μ + μ²/θ).
    """
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_spots)))
    grid = np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), axis=-1).reshape(-1, 2)[:n_spots]
    coords = (grid + rng.uniform(-0.2, 0.2, size=grid.shape)) / side
    sizes = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=n_types))
    profiles = rng.gamma(0.4, size=(n_types, n_genes)) + 1e-3
    reference = sizes[:, None] * profiles / profiles.sum(axis=1, keepdims=True) * n_genes
    if spatial:
        regions = np.minimum((coords[:, 0] * n_regions).astype(np.int64), n_regions - 1)
        region_fractions = rng.dirichlet(np.full(n_types, concentration), size=n_regions)
        proportions = region_fractions[regions]
    else:
        regions = np.zeros(n_spots, dtype=np.int64)
        proportions = rng.dirichlet(np.full(n_types, concentration), size=n_spots)
    gamma = np.exp(rng.normal(0.0, platform_sd, size=n_genes)) if platform_sd > 0 else np.ones(n_genes)
    expected = (proportions @ reference) * gamma
    library = depth * np.exp(rng.uniform(np.log(1 / np.sqrt(3)), np.log(np.sqrt(3)), size=n_spots))
    expected *= (library / expected.sum(axis=1))[:, None]
    if theta is not None:
        expected = expected * rng.gamma(theta, 1.0 / theta, size=expected.shape)
    counts = rng.poisson(expected).astype(np.float64)
    return CountSimulation(counts, reference, proportions, coords, regions, gamma, seed)


@dataclass
class PseudoSpots:
    """Single cells binned into squares: summed expression, true fractions of cells, square centres."""

    counts: np.ndarray  # (n_bins, G)
    fractions: np.ndarray  # (n_bins, K)
    coords: np.ndarray  # (n_bins, 2)
    n_cells: np.ndarray  # (n_bins,)
    cell_types: list[str]


def pseudo_spots(coords, cell_types, expression, size: float, *, types: list[str] | None = None) -> PseudoSpots:
    """Bin cells into ``size`` × ``size`` squares (the grid starts at the lowest coordinates): known truth for
    deconvolution from real single-cell data, the class fractions of each square's cells."""
    import scipy.sparse as sp

    xy = np.asarray(coords, dtype=np.float64)
    labels = np.asarray(cell_types).astype(str)
    if not size > 0:
        raise S3RInputError(f"pseudo-spot size must be > 0, not {size}")
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] != labels.shape[0] or expression.shape[0] != labels.shape[0]:
        raise S3RInputError("pseudo_spots: coords (n × 2), cell types (n) and expression (n × genes) must have one row per cell")
    names = sorted(set(labels)) if types is None else list(types)
    codes = np.searchsorted(names, labels) if types is None else np.array([names.index(t) for t in labels])
    cells = np.floor((xy - xy.min(axis=0)) / size).astype(np.int64)
    keys, bins = np.unique(cells[:, 0] * (cells[:, 1].max() + 1) + cells[:, 1], return_inverse=True)
    membership = sp.csr_matrix((np.ones(len(bins)), (bins, np.arange(len(bins)))), shape=(len(keys), len(bins)))
    summed = membership @ expression
    counts = np.asarray(summed.todense() if sp.issparse(summed) else summed, dtype=np.float64)
    tallies = np.zeros((len(keys), len(names)))
    np.add.at(tallies, (bins, codes), 1.0)
    n_cells = tallies.sum(axis=1)
    width = cells[:, 1].max() + 1
    centres = (np.column_stack([keys // width, keys % width]) + 0.5) * size + xy.min(axis=0)
    return PseudoSpots(counts, tallies / n_cells[:, None], centres, n_cells, names)
