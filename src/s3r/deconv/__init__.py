"""Spatially regularised cell-type deconvolution.

Two modes. Proportions (:class:`CellTypeProportions`): cell-type proportions fitted directly to spot counts
against reference profiles with a count likelihood, graph TV with learned edge weights, λ chosen by held-out
genes. Components (:class:`Deconvolution`, the seed's model): per-spot likelihood scores S explained as a
mixture X Bᵀ of D latent components.
"""

from s3r.deconv.metrics import argmax_ari, mean_jensen_shannon, neighbour_agreement, proportions_rmse
from s3r.deconv.counts import reference_from_h5ad
from s3r.deconv.model import Deconvolution
from s3r.deconv.proportions import CellTypeProportions, combined_mst
from s3r.deconv.scores import poisson_scores, validate_scores
from s3r.deconv.simplex import project_floor_simplex
from s3r.deconv.simulate import CountSimulation, DeconvolutionSimulation, simulate_counts, simulate_deconvolution
from s3r.deconv.wstep import check_weight_bounds

__all__ = [
    "CellTypeProportions",
    "CountSimulation",
    "Deconvolution",
    "combined_mst",
    "reference_from_h5ad",
    "simulate_counts",
    "DeconvolutionSimulation",
    "argmax_ari",
    "check_weight_bounds",
    "mean_jensen_shannon",
    "neighbour_agreement",
    "poisson_scores",
    "project_floor_simplex",
    "proportions_rmse",
    "simulate_deconvolution",
    "validate_scores",
]
