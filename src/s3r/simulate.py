"""Simulated data in the design of the S3R paper's simulation study.

Regions come from the paper's own ground-truth layouts (bundled in ``s3r/data/regions``), so scores are
comparable with the published ones; real tissue geometries (``s3r/data/geometry``) put the same regions on
realistic spacing, holes and edges.

Coefficient design (the paper does not fix one; this one is chosen to be defensible and testable):

- Every region has exactly ``N_INFORMATIVE`` = 5 informative features. They are windows of a shared pool:
  a random set of ``3R + 2`` features (R regions) in random order, region r taking pool entries
  ``3r .. 3r + 4``. Consecutive regions therefore share 2 features and no two regions share a support, so
  regions overlap partly (a global model cannot separate them) yet stay identifiable.
- Magnitudes are uniform in ``COEF_RANGE`` = [30, 60] with random signs, drawn independently per region (a
  shared feature has unrelated coefficients in the two regions). With X ~ N(0, 1) that gives y an sd of
  about 100, the scale of the reference example data (sd ≈ 108), so σ ∈ {0.5, 1, 2} is the paper's
  high-SNR regime.
- Independent random streams (spawned from ``seed``) drive locations, X, coefficients and noise: with the
  same seed, changing σ changes only the noise, and the coefficients do not depend on the geometry.

Two designs (``simulate(..., design=...)``):

- ``"reference"`` (the default, unchanged since the first release; the same seed gives bit-identical arrays):
  X ~ N(0, 1) independent, coefficients 30–60, no intercept, so y has sd ≈ 100 and σ ∈ {0.5, 1, 2} is
  noise far below the signal (R² > 0.9999). This is the scale every earlier benchmark was measured on.
- ``"expression"``: unit-scale, log-expression-like features and effects comparable to the noise.
  Features are ``log1p`` of Poisson counts whose log-rates share ``EXPRESSION_PROGRAMMES`` = 5 latent
  programmes (each feature loads on one) and a per-spot library-size factor, so they are non-negative, have
  about 20 % zeros, sd ≈ 0.5–1 and correlations ≈ 0.5 within a programme (≈ 0.05 between). The programmes
  are drawn independently per spot: the features carry no information on the regions, which are visible only
  through the coefficients. The informative features, signs and relative magnitudes are those of the
  reference design for the same seed; one global factor (``Simulation.coef_scale``) rescales W so that the
  signal ⟨x_i, w_i⟩ has sd exactly 1 over the simulated spots. y = intercept + ⟨x_i, w_i⟩ + σ·ε with
  intercept ``EXPRESSION_INTERCEPT`` = 2 (a baseline log-expression) unless given, so σ is the noise sd
  relative to the signal's: σ = 0.5, 1, 2 give a signal R² of 1/(1 + σ²) = 0.8, 0.5, 0.2. The model is
  the plain one on the features as given (not centred): the regions' mean targets differ by x̄·w_r.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from s3r.errors import S3RInputError
from s3r.simulate_demo import write_h5ad, write_reference_csv  # the writers live beside the demo writer

__all__ = [
    "LAYOUTS",
    "GEOMETRIES",
    "HIGHDIM_LAYOUTS",
    "N_INFORMATIVE",
    "COEF_RANGE",
    "DESIGNS",
    "EXPRESSION_PROGRAMMES",
    "EXPRESSION_INTERCEPT",
    "Simulation",
    "load_layout",
    "load_geometry",
    "simulate",
    "simulate_target",
    "write_reference_csv",
    "write_h5ad",
]

LAYOUTS = (
    "three_regions",
    "four_quadrants",
    "five_regions",
    "six_regions",
    "three_regions_highdim",
    "four_regions_highdim",
)
HIGHDIM_LAYOUTS = ("three_regions_highdim", "four_regions_highdim")
GEOMETRIES = ("dlpfc_151507", "dlpfc_151673", "xenium_breast")
_GEOMETRY_FILES = {
    "dlpfc_151507": ("dlpfc_151507_visium_coords.csv", ("row", "col")),
    "dlpfc_151673": ("dlpfc_151673_visium_coords.csv", ("row", "col")),
    "xenium_breast": ("xenium_breast_region_cells_coords.csv", ("x", "y")),
}
N_INFORMATIVE = 5
_POOL_STRIDE = 3  # window step: consecutive regions share N_INFORMATIVE - _POOL_STRIDE features
COEF_RANGE = (30.0, 60.0)
HIGHDIM_RATIO = 1.5  # p = round(1.5 n) in the high-dimensional layouts
DEFAULT_N_FEATURES = 100
DESIGNS = ("reference", "expression")
EXPRESSION_PROGRAMMES = 5  # latent programmes shared by the features of the expression design
EXPRESSION_INTERCEPT = 2.0  # baseline log-expression of the target in the expression design
# log-rate of feature j at spot i: log m_j + loading·z_{i,g(j)} + own·e_ij + library_i, counts ~ Poisson(exp(.))
_EXPR_LOG_MEAN = (np.log(2.0), 0.7)  # log m_j ~ N(mean, sd): median 2 counts per spot, most in 0.5–8
_EXPR_LOADING = 0.8  # programme effect on the log-rate (sd)
_EXPR_OWN = 0.5  # feature-specific log-rate noise (sd)
_EXPR_LIBRARY = 0.3  # per-spot library-size factor on the log scale (sd), shared by all features


@dataclass
class Simulation:
    """A simulated data set with its ground truth."""

    X: np.ndarray  # (n, p)
    y: np.ndarray  # (n,)
    coords: np.ndarray  # (n, 2), in the unit square
    W: np.ndarray  # (n, p) true coefficients, constant within a region
    regions: np.ndarray  # (n,) int, the layout's cluster ids
    layout: str
    sigma: float
    seed: int
    informative: dict[int, list[int]]  # region -> sorted informative feature indices
    geometry: str = "layout"
    design: str = "reference"  # "reference" or "expression", see the module docstring
    intercept: float = 0.0  # y = intercept + <x_i, w_i> + sigma * noise
    coef_scale: float = 1.0  # factor applied to the reference-range coefficients (expression: signal sd 1)

    @property
    def n_spots(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def n_regions(self) -> int:
        return len(self.informative)

    @property
    def signal(self) -> np.ndarray:
        """The noiseless part of y without the intercept, ⟨x_i, w_i⟩ per spot."""
        return np.einsum("ij,ij->i", self.X, self.W)

    @property
    def spot_ids(self) -> list[str]:
        return [f"spot_{i + 1}" for i in range(self.n_spots)]

    @property
    def feature_names(self) -> list[str]:
        return [f"feature_{j + 1}" for j in range(self.n_features)]


def _unknown(kind: str, name: str, choices: tuple[str, ...]) -> S3RInputError:
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return S3RInputError(f"unknown {kind} {name!r}{hint}; choose one of {', '.join(choices)}")


@lru_cache(maxsize=None)
def _read_bundled(folder: str, filename: str) -> pd.DataFrame:
    with resources.files("s3r").joinpath("data", folder, filename).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def load_layout(name: str) -> pd.DataFrame:
    """The paper's ground-truth layout: points in [0, 1]² with columns ``x``, ``y``, ``cluster``."""
    if name not in LAYOUTS:
        raise _unknown("layout", name, LAYOUTS)
    df = _read_bundled("regions", f"{name}.csv")
    return df[["x", "y", "cluster"]].astype({"x": np.float64, "y": np.float64, "cluster": np.int64}).copy()


def load_geometry(name: str) -> np.ndarray:
    """Coordinates of a real tissue section, in its own units (pixels for Visium, µm for Xenium)."""
    if name not in GEOMETRIES:
        raise _unknown("geometry", name, GEOMETRIES)
    filename, cols = _GEOMETRY_FILES[name]
    return _read_bundled("geometry", filename)[list(cols)].to_numpy(dtype=np.float64)


def _to_unit_square(coords: np.ndarray) -> np.ndarray:
    """Scale into [0, 1]² keeping the aspect ratio; the shorter side is centred, so the tissue sits over the
    middle of the layout rather than along one edge."""
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    span = float((hi - lo).max())
    if span == 0:
        raise S3RInputError("simulation geometry: all spots share one location; give distinct coordinates")
    scaled = (coords - lo) / span
    scaled += (1.0 - (hi - lo) / span) / 2.0
    return scaled


def _coefficients(rng: np.random.Generator, n_regions: int, p: int) -> tuple[np.ndarray, dict[int, list[int]]]:
    pool_size = _POOL_STRIDE * (n_regions - 1) + N_INFORMATIVE
    pool = rng.permutation(p)[:pool_size]
    B = np.zeros((n_regions, p))
    informative: dict[int, list[int]] = {}
    for r in range(n_regions):
        support = np.sort(pool[_POOL_STRIDE * r : _POOL_STRIDE * r + N_INFORMATIVE])
        magnitude = rng.uniform(*COEF_RANGE, size=N_INFORMATIVE)
        sign = rng.choice(np.array([-1.0, 1.0]), size=N_INFORMATIVE)
        B[r, support] = magnitude * sign
        informative[r] = [int(j) for j in support]
    return B, informative


def _expression_design(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    """log1p of Poisson counts from shared latent programmes (module docstring, design "expression")."""
    programme = rng.integers(0, EXPRESSION_PROGRAMMES, size=p)
    log_mean = rng.normal(*_EXPR_LOG_MEAN, size=p)
    z = rng.standard_normal((n, EXPRESSION_PROGRAMMES))
    library = _EXPR_LIBRARY * rng.standard_normal(n)
    log_rate = log_mean + _EXPR_LOADING * z[:, programme] + _EXPR_OWN * rng.standard_normal((n, p)) + library[:, None]
    return np.log1p(rng.poisson(np.exp(log_rate)).astype(np.float64))


def _signal_scale(X: np.ndarray, W: np.ndarray) -> float:
    sd = float(np.einsum("ij,ij->i", X, W).std())
    if not np.isfinite(sd) or sd <= 0:
        raise S3RInputError(
            f"simulation: the expression design's signal is constant on these {len(X)} spots, so it cannot be "
            f"scaled to sd 1; simulate more spots"
        )
    return 1.0 / sd


def _check_sigma(sigma) -> float:
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise S3RInputError(f"simulation: sigma must be a number, not {sigma!r}") from None
    if not np.isfinite(sigma) or sigma < 0:
        raise S3RInputError(f"simulation: sigma must be finite and >= 0, not {sigma}")
    return sigma


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise S3RInputError(f"simulation: seed must be a non-negative integer, not {seed!r}")
    return int(seed)


def simulate(
    layout: str = "three_regions",
    *,
    sigma: float = 1.0,
    n_features: int | None = None,
    geometry: str | np.ndarray = "layout",
    n_spots: int | None = None,
    seed: int = 0,
    design: str = "reference",
    intercept: float | None = None,
) -> Simulation:
    """Simulate y = intercept + ⟨x_i, W_region(i)⟩ + σ·ε on one of the paper's region layouts.

    ``geometry``: ``"layout"`` (the layout's own points), ``"uniform"`` (``n_spots`` uniform points), a name
    in ``GEOMETRIES`` or an (n, 2) array; real geometries and arrays are scaled into the unit square and
    labelled by the nearest layout point. ``n_spots`` subsamples any geometry but ``"uniform"``.
    ``n_features`` defaults to 100, or round(1.5 n) for the high-dimensional layouts (p > n).

    ``design``: ``"reference"`` (default; X ~ N(0, 1), coefficients 30–60, y sd ≈ 100, so σ is tiny next
    to the signal) or ``"expression"`` (log1p-count features from shared programmes, signal sd exactly 1, so
    σ is the noise sd relative to the signal: R² = 1/(1 + σ²)); see the module docstring.
    ``intercept``: the baseline added to y; default 0 in the reference design and ``EXPRESSION_INTERCEPT``
    (2.0) in the expression design.
    """
    if layout not in LAYOUTS:
        raise _unknown("layout", layout, LAYOUTS)
    if not isinstance(design, str) or design not in DESIGNS:
        raise _unknown("design", design, DESIGNS)
    intercept = _check_intercept(intercept, design)
    sigma = _check_sigma(sigma)
    seed = _check_seed(seed)
    if n_spots is not None and (isinstance(n_spots, bool) or not isinstance(n_spots, (int, np.integer)) or n_spots < 1):
        raise S3RInputError(f"simulation: n_spots must be a positive integer, not {n_spots!r}")

    # The layout enters the entropy so that benchmarks over layouts with one seed get unrelated designs.
    streams = np.random.SeedSequence([seed, LAYOUTS.index(layout)]).spawn(4)
    loc_rng, x_rng, coef_rng, noise_rng = (np.random.default_rng(s) for s in streams)
    ref = load_layout(layout)
    ref_xy = ref[["x", "y"]].to_numpy()
    ref_labels = ref["cluster"].to_numpy()
    region_ids = np.unique(ref_labels)
    if not np.array_equal(region_ids, np.arange(len(region_ids))):
        raise RuntimeError(f"bundled layout {layout} has clusters {region_ids}, expected 0..R-1")

    coords, regions, geometry_name = _spots(geometry, n_spots, loc_rng, ref_xy, ref_labels)
    n = len(coords)

    n_regions = len(region_ids)
    p = _n_features(n_features, layout, n, n_regions)

    B, informative = _coefficients(coef_rng, n_regions, p)
    if design == "reference":
        X = x_rng.standard_normal((n, p))
        W, coef_scale = B[regions], 1.0
    else:
        X = _expression_design(x_rng, n, p)
        coef_scale = _signal_scale(X, B[regions])
        W = B[regions] * coef_scale
    y = np.einsum("ij,ij->i", X, W) + sigma * noise_rng.standard_normal(n)
    if intercept != 0.0:
        y = y + intercept
    return Simulation(
        X=X,
        y=y,
        coords=coords,
        W=W,
        regions=regions,
        layout=layout,
        sigma=sigma,
        seed=seed,
        informative=informative,
        geometry=geometry_name,
        design=design,
        intercept=intercept,
        coef_scale=coef_scale,
    )


def _check_intercept(intercept, design: str) -> float:
    """The baseline added to y: the design's default when None, else a finite number."""
    if intercept is None:
        intercept = EXPRESSION_INTERCEPT if design == "expression" else 0.0
    try:
        intercept = float(intercept)
    except (TypeError, ValueError):
        raise S3RInputError(f"simulation: intercept must be a number, not {intercept!r}") from None
    if not np.isfinite(intercept):
        raise S3RInputError(f"simulation: intercept must be finite, not {intercept}")
    return intercept


def _spots(geometry, n_spots, loc_rng, ref_xy, ref_labels) -> tuple[np.ndarray, np.ndarray, str]:
    """(coordinates, region per spot, geometry name): the geometry's points, subsampled to ``n_spots``, each
    labelled with the region of its nearest layout point (the layout's own labels when it is the layout)."""
    if isinstance(geometry, str):
        geometry_name = geometry
        if geometry == "layout":
            coords, regions = ref_xy.copy(), ref_labels.copy()
        elif geometry == "uniform":
            if n_spots is None:
                raise S3RInputError("simulation: geometry='uniform' needs n_spots (the number of spots)")
            coords, regions = loc_rng.uniform(0.0, 1.0, size=(int(n_spots), 2)), None
        elif geometry in GEOMETRIES:
            coords, regions = _to_unit_square(load_geometry(geometry)), None
        else:
            raise _unknown("geometry", geometry, ("layout", "uniform") + GEOMETRIES)
    else:
        geometry_name = "array"
        coords = np.asarray(geometry, dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] < 1:
            raise S3RInputError(f"simulation: geometry array must have shape (n, 2), not {coords.shape}")
        if not np.isfinite(coords).all():
            row = int(np.argwhere(~np.isfinite(coords))[0, 0])
            raise S3RInputError(f"simulation: geometry array has NaN/inf at row {row}; give finite coordinates")
        coords, regions = _to_unit_square(coords), None

    if n_spots is not None and geometry_name != "uniform":
        if n_spots > len(coords):
            raise S3RInputError(
                f"simulation: n_spots={n_spots} exceeds the {len(coords)} spots of geometry {geometry_name!r}; "
                f"lower n_spots"
            )
        keep = np.sort(loc_rng.choice(len(coords), size=int(n_spots), replace=False))
        coords = coords[keep]
        regions = regions[keep] if regions is not None else None
    if regions is None:
        _, nearest = cKDTree(ref_xy).query(coords)
        regions = ref_labels[nearest]
    regions = np.asarray(regions, dtype=np.int64)
    return coords, regions, geometry_name


def _n_features(n_features, layout: str, n: int, n_regions: int) -> int:
    """The number of features: the layout's default unless given, enough for every region's informative ones."""
    if n_features is None:
        p = int(round(HIGHDIM_RATIO * n)) if layout in HIGHDIM_LAYOUTS else DEFAULT_N_FEATURES
    else:
        p = int(n_features)
    need = _POOL_STRIDE * (n_regions - 1) + N_INFORMATIVE
    if p < need:
        raise S3RInputError(
            f"simulation: n_features={p} is too small for layout {layout!r} ({n_regions} regions need "
            f"{need} informative features); raise n_features"
        )
    return p


def simulate_target(sim: Simulation, seed: int, sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A further target on ``sim``'s features, spots and regions, as a second gene would be: coefficients drawn
    afresh by the layout's rules (the informative features ``simulate(..., seed=seed)`` would pick), new noise,
    the same design rules (expression: scaled to signal sd 1 on ``sim.X``, plus ``sim.intercept``).

    ``sigma`` defaults to ``sim.sigma``. Returns ``(y, W)``.
    """
    seed = _check_seed(seed)
    sigma = sim.sigma if sigma is None else _check_sigma(sigma)
    streams = np.random.SeedSequence([seed, LAYOUTS.index(sim.layout)]).spawn(4)
    coef_rng, noise_rng = np.random.default_rng(streams[2]), np.random.default_rng(streams[3])
    B, _ = _coefficients(coef_rng, sim.n_regions, sim.n_features)
    W = B[sim.regions]
    if sim.design == "expression":
        W = W * _signal_scale(sim.X, W)
    y = np.einsum("ij,ij->i", sim.X, W) + sigma * noise_rng.standard_normal(sim.n_spots)
    if sim.intercept != 0.0:
        y = y + sim.intercept
    return y, W
