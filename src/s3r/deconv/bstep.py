"""B-step: the dictionary (cell types × components) for fixed mixtures.

−Σ_i log Σ_k S_ik (X Bᵀ)_ik is convex in B with columns on the floor simplex, but its curvature depends on
how small the evidence z gets, so the step comes from backtracking rather than a bound guessed up front.
"""

from __future__ import annotations

import torch

from s3r.deconv.apg import APGResult, accelerated_projected_gradient
from s3r.deconv.simplex import project_columns_floor_simplex


def solve_b_step(
    scores: torch.Tensor,
    mixture: torch.Tensor,
    dictionary: torch.Tensor,
    eps: float,
    *,
    lipschitz: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 500,
) -> APGResult:
    """Minimise −Σ log z over B (K × D); scores (K × n) and mixture (D × n) are component-major.

    ``lipschitz`` warm-starts the step from the previous outer iteration. The objective is averaged over
    spots so that ``tol`` means the same at 10³ and 10⁵ spots.
    """
    n_spots = scores.shape[1]

    def objective(B: torch.Tensor):
        z = ((B.T @ scores) * mixture).sum(dim=0)
        return -torch.log(z).sum() / n_spots, lambda: -(scores @ (mixture / z).T) / n_spots

    return accelerated_projected_gradient(
        objective,
        lambda V: project_columns_floor_simplex(V, eps),
        dictionary,
        lipschitz=lipschitz,
        tol=tol,
        max_iter=max_iter,
    )
