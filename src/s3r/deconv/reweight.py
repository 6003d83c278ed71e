"""Edge weights from smoothed jumps: down-weight the edges that cross region boundaries, and only those.

What learned weights are for is to let the TV term cut along region boundaries and smooth inside regions. On
the DLPFC layers the LP w-step (s3r.deconv.wstep) puts 79 % of the within-layer edges at w_min and its weights
barely tell within- from cross-layer edges (ROC AUC 0.54), because a single spot's jump is mostly noise. The
jump of proportions averaged over each spot's neighbourhood (three hops) is a far better boundary signal
(AUC 0.75), so this rule weights each edge by the inverse of that jump,

    w_e ∝ u_e / (c̃_e + median(c̃)),   c̃_e = Σ_k |(S³V)_ki − (S³V)_kj|,   S = neighbourhood mean,

rescaled so the weights sum to what the uniform weights u sum to (λ keeps its scale). This is the classic
reweighted-ℓ1 step (Candès, Wakin & Boyd) with the boundary signal smoothed; a few rounds suffice.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

WEIGHT_RULES = ("smoothed", "lp")  # this module (the default), or the seed's LP w-step (s3r.deconv.wstep)
SMOOTHING_HOPS = 3
ROUNDS = 4  # V-steps of one fit: three weight updates
WEIGHT_RTOL = 1e-3  # a round that moves no weight by more than this (relative) ends the updates
# a V-step whose weights will change again only feeds the next weights (three-hop means of V, insensitive to
# the last digits): it stops at this multiple of the fit's tolerance; the last V-step meets the tolerance itself
EARLY_TOL_FACTOR = 10.0


def neighbourhood_mean(node_edge: sp.spmatrix) -> sp.csr_matrix:
    """S (n × n): each spot's value replaced by the mean over itself and its graph neighbours."""
    incidence = sp.csr_matrix(node_edge)
    adjacency = (incidence @ incidence.T).tocsr()
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    adjacency.data[:] = 1.0
    adjacency = adjacency + sp.identity(adjacency.shape[0], format="csr")
    return sp.diags(1.0 / np.asarray(adjacency.sum(axis=1)).ravel()) @ adjacency


def smoothed_jump_weights(V: torch.Tensor, incidence, smoother: sp.csr_matrix, uniform: torch.Tensor) -> torch.Tensor:
    """Weights for the next V-step from the current transcript fractions V (K × n)."""
    smoothed = V.T.detach().cpu().numpy().astype(np.float64)
    for _ in range(SMOOTHING_HOPS):
        smoothed = smoother @ smoothed
    jumps = incidence.apply(torch.as_tensor(smoothed.T.copy(), dtype=V.dtype, device=V.device)).abs().sum(dim=0)
    raw = uniform / (jumps + jumps.median().clamp_min(torch.finfo(V.dtype).tiny))
    return raw * (uniform.sum() / raw.sum())


def weights_settled(new: torch.Tensor, old: torch.Tensor) -> bool:
    return bool(((new - old).abs() <= WEIGHT_RTOL * old.abs().clamp_min(torch.finfo(old.dtype).tiny)).all())


def transfer_dual(dual: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """The last V-step's dual (K × m) carried into the box of the new weights, Y_e·w'_e/w_e: an edge at its
    bound stays at its bound, so the next V-step starts near its saddle point instead of from zero."""
    return dual * (new / old.clamp_min(torch.finfo(old.dtype).tiny)).unsqueeze(0)
