"""Numerical zeros: columns the solver leaves at a norm far below the tolerance are certified at zero and zeroed.

An iterative solve reaches the optimum only to its tolerance, so a feature whose exact coefficient map is zero can
end with a group norm of 1e-8 after the last group-lasso prox (measured: ZNF488 in the DLPFC MBP fit with a spatial
intercept, every spot ~1e-10). Reported as "selected", such a column is a claim nobody can see on a map. Instead of a
display threshold, each such column is put to the same test the working sets use for excluded features
(:func:`s3r.solver.working_set.check_excluded`, with the data gradient taken at W with that column removed): only a
column proven optimal at zero is zeroed, so the support reported is one the optimality conditions vouch for. The
change to the objective is below the column's own negligible contribution (≤ ``PRUNE_RTOL`` of the largest column).
"""

from __future__ import annotations

import numpy as np
import torch

from s3r.solver.penalties import GraphL1
from s3r.solver.certificates import check_excluded, data_gradient

PRUNE_RTOL = 1e-6  # a column is a candidate when its norm is below this share of the problem's largest column norm


def squared_loss_gradient(datafit, b: int, W_b: torch.Tensor, free_b: torch.Tensor) -> torch.Tensor:
    """(n, 1) data gradient of problem b at W_b (covariates at their optimum) for the squared loss."""
    sub = type(datafit)(datafit.X, datafit.y[:, b:b + 1], datafit.o[:, b:b + 1], datafit.Z)
    return data_gradient(sub, W_b, free_b)


def prune_numerical_zeros(datafit, penalty, smooth, K, W: torch.Tensor, gradient=squared_loss_gradient) -> tuple[torch.Tensor, list[list[int]]]:
    """(W with certified numerical zeros set to 0, the zeroed columns of each problem). Penalised columns only.

    ``gradient(datafit, b, W_b, free_b)`` gives problem b's data gradient with respect to its prediction (n, 1)
    at W_b with the covariates at their optimum (the GLM solver passes its own)."""
    n, B, p = W.shape
    norms = torch.linalg.vector_norm(W, dim=0)  # (B, p)
    penalised = (penalty.factor > 0).view(1, -1)
    candidate = (norms > 0) & (norms <= PRUNE_RTOL * norms.amax(dim=1, keepdim=True)) & penalised
    zeroed: list[list[int]] = [[] for _ in range(B)]
    if not bool(candidate.any()):
        return W, zeroed
    free = penalty.free.squeeze(-1)
    smooth_l1 = isinstance(smooth, GraphL1) and K is not None
    W = W.clone()
    for b in torch.nonzero(candidate.any(dim=1)).flatten().tolist():
        cols = torch.nonzero(candidate[b]).flatten()
        trial = W[:, b:b + 1, :].clone()
        trial[:, :, cols] = 0  # the gradient at the point the check would vouch for: every candidate removed
        v = gradient(datafit, b, trial, free[:, b:b + 1])
        lam = smooth.lam.view(-1)[b:b + 1] if smooth_l1 else None
        violates, _, _ = check_excluded(datafit.X, v, free[:, b:b + 1], cols.cpu().numpy(), penalty.alpha[b:b + 1],
                                        penalty.beta[b:b + 1], penalty.factor, K if smooth_l1 else None, lam)
        proven = cols[torch.as_tensor(~violates, device=cols.device)]
        W[:, b, proven] = 0  # a candidate the check cannot vouch for keeps its (noise-level) values
        zeroed[b] = sorted(int(j) for j in proven.tolist())
    return W, zeroed
