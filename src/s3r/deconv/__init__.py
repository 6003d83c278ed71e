"""Spatially regularised cell-type deconvolution (design.md §5).

Per-spot cell-type likelihood scores S are explained as a mixture X Bᵀ of D components whose mixtures vary
smoothly, with sharp boundaries, over a spot graph (weighted graph total variation, learned edge weights).
"""

from s3r.deconv.metrics import argmax_ari, mean_jensen_shannon, neighbour_agreement, proportions_rmse
from s3r.deconv.model import Deconvolution
from s3r.deconv.scores import poisson_scores, validate_scores
from s3r.deconv.simplex import project_floor_simplex
from s3r.deconv.simulate import DeconvolutionSimulation, simulate_deconvolution
from s3r.deconv.wstep import check_weight_bounds

__all__ = [
    "Deconvolution",
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
