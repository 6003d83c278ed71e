"""The weighted squared-error data fit, batched over B problems that share X.

f(W, γ) = φ(M(W, γ)) with the prediction operator M(W, γ)_i = ⟨x_i, W_i⟩ + ⟨z_i, γ⟩ and
φ(ŷ) = (1/n) Σ_i o_i (y_i − ŷ_i)². The solver handles f through the conjugate φ*, whose prox is closed form
and separable over spots, so the primal step is not capped by f's curvature (the slow direction of a
gradient step on this rank-one-per-spot fit). W is stored as (n, B, p); y, o and the dual as (n, B).
"""

from __future__ import annotations

import torch


class SquaredLoss:
    def __init__(self, X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, covariates: torch.Tensor | None):
        self.X = X  # (n, p)
        self.y = y  # (n, B)
        self.o = weights  # (n, B)
        self.Z = covariates  # (n, q) or None
        self.n = X.shape[0]
        self.c = weights / self.n  # φ_i(ŷ) = c_i (y_i − ŷ_i)²

    def predict(self, W: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
        if W.shape[1] == 1:  # one problem: a batched mat-vec, no W-sized temporary
            pred = torch.bmm(W, self.X.unsqueeze(-1)).squeeze(-1)
        else:
            pred = torch.linalg.vecdot(W, self.X.unsqueeze(1))
        if self.Z is not None:
            pred = pred + self.Z @ gamma.T
        return pred

    def adjoint(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mᵀ v: (n, B) → W-shaped (n, B, p) and γ-shaped (B, q)."""
        gW = v.unsqueeze(-1) * self.X.unsqueeze(1)
        gZ = v.T @ self.Z if self.Z is not None else None
        return gW, gZ

    def value(self, pred: torch.Tensor) -> torch.Tensor:
        r = self.y - pred
        return (self.o * r * r).sum(0) / self.n

    def dual_prox(self, a: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """prox of σφ*: φ_i*(v) = v y_i + v²/(4c_i), so v = 2c_i (a − σ y_i)/(2c_i + σ) (0 where c_i = 0)."""
        two_c = 2 * self.c
        return two_c * (a - sigma * self.y) / (two_c + sigma)

    def row_norms2(self) -> torch.Tensor:
        """(n, 1) ‖x_i‖², the per-spot norm of M used for diagonal preconditioning."""
        return (self.X * self.X).sum(1, keepdim=True)

    def covariate_norm2(self, sigma_v: torch.Tensor) -> torch.Tensor | None:
        """(B,) λ_max(Zᵀ diag(σ_v) Z): the covariate block's share of the step condition."""
        if self.Z is None:
            return None
        G = torch.einsum("nb,nq,nr->bqr", sigma_v, self.Z, self.Z)
        return torch.linalg.eigvalsh(G)[:, -1].clamp_min(0)
