"""The weighted squared-error data fit, batched over B problems that share X.

f(W, γ) = φ(M(W, γ)) with the prediction operator M(W, γ)_i = ⟨x_i, W_i⟩ + ⟨z_i, γ⟩ and
φ(ŷ) = (1/n) Σ_i o_i (y_i − ŷ_i)². The solver handles f through the conjugate φ*, whose prox is closed form
and separable over spots, so the primal step is not capped by f's curvature (the slow direction of a
gradient step on this rank-one-per-spot fit). W is stored as (n, B, p); y, o and the dual as (n, B).

Unpenalised covariates γ (an intercept, batch, library size) are eliminated exactly rather than stepped: min over
γ of φ(MW + Zγ) has the conjugate φ*(v) + ι{Zᵀv = 0}, whose prox is still closed form (a q × q solve per problem),
and its multiplier is −γ. Stepping γ instead made the intercept the slowest direction of the whole iteration
(on a real Visium section an intercept model did not converge in 200,000 iterations).
"""

from __future__ import annotations

import copy

import torch


class SquaredLoss:
    def __init__(self, X: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, covariates: torch.Tensor | None):
        self.X = X  # (n, p)
        self.y = y  # (n, B)
        self.o = weights  # (n, B)
        self.Z = covariates  # (n, q) or None
        self.n = X.shape[0]
        self.c = weights / self.n  # φ_i(ŷ) = c_i (y_i − ŷ_i)²
        self._x2 = None  # ‖x_i‖², made at the first row_norms2

    @property
    def eliminates_covariates(self) -> bool:
        return self.Z is not None

    def predict_w(self, W: torch.Tensor) -> torch.Tensor:
        """MW: the prediction without the covariates (their part is carried by the dual constraint)."""
        return self.predict(W, None, covariates=False)

    def predict(self, W: torch.Tensor, gamma: torch.Tensor | None, covariates: bool = True) -> torch.Tensor:
        if W.shape[1] == 1:  # one problem: a batched mat-vec, no W-sized temporary
            pred = torch.bmm(W, self.X.unsqueeze(-1)).squeeze(-1)
        else:
            pred = torch.linalg.vecdot(W, self.X.unsqueeze(1))
        if covariates and self.Z is not None and gamma is not None:
            pred = pred + self.Z @ gamma.T
        return pred

    def adjoint(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mᵀ v: (n, B) → W-shaped (n, B, p) and γ-shaped (B, q)."""
        gW = v.unsqueeze(-1) * self.X.unsqueeze(1)
        gZ = v.T @ self.Z if self.Z is not None else None
        return gW, gZ

    def add_adjoint_(self, V: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """V += Mᵀv in place (the primal step's data part, without a W-sized temporary)."""
        return V.addcmul_(v.unsqueeze(-1), self.X.unsqueeze(1))

    def adjoint_norm(self, v: torch.Tensor) -> torch.Tensor:
        """(B,) ‖Mᵀv‖ per problem without forming Mᵀv: its row i is v_i x_i, so ‖Mᵀv‖² = Σ_i v_i² ‖x_i‖²."""
        return torch.sqrt((v * v * self.row_norms2()).sum(0))

    def column_gradients(self, v: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
        """(rows of W, B, |J|) the data gradient of the columns J given the dual (n, B): Mᵀv restricted to J."""
        return v.unsqueeze(-1) * self.X[:, J].unsqueeze(1)

    def restrict(self, J: torch.Tensor) -> "SquaredLoss":
        """The same fit on the feature columns J only (a working set's restricted problem)."""
        return SquaredLoss(self.X[:, J].contiguous(), self.y, self.o, self.Z)

    def select(self, idx: torch.Tensor) -> "SquaredLoss":
        """The same fit for the problems ``idx`` of the batch only (a converged problem leaves the PDHG's batch)."""
        new = copy.copy(self)  # X, Z and a subclass's aggregates are shared by the batch
        new.y, new.o, new.c = (a.index_select(1, idx) for a in (self.y, self.o, self.c))
        return new

    @property
    def y_link(self) -> torch.Tensor:
        """The response on the prediction's scale (the solver's magnitudes: its first step, its residuals' scale)."""
        return self.y

    def curvature_scale(self) -> float:
        """A typical ∂²φ_i/∂ŷ² relative to 2c_i: 1 for the squared loss (a count family's depends on the mean)."""
        return 1.0

    def spot_rows(self, T: torch.Tensor) -> torch.Tensor:
        """A per-row tensor of W (n_rows, B) seen per spot (n, B): W's rows are the spots here."""
        return T

    def value(self, pred: torch.Tensor) -> torch.Tensor:
        r = self.y - pred
        return (self.o * r * r).sum(0) / self.n

    def dual_prox(self, a: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """prox of σφ*: φ_i*(v) = v y_i + v²/(4c_i), so v = 2c_i (a − σ y_i)/(2c_i + σ) (0 where c_i = 0)."""
        two_c = 2 * self.c
        return two_c * (a - sigma * self.y) / (two_c + sigma)

    def dual_prox_eliminated(self, a: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prox of σ(φ* + ι{Zᵀv = 0}) and γ, the constraint's multiplier with its sign flipped.

        Per spot v_i = k_i (a_i/σ_i − y_i + (Zγ)_i) with k_i = 2c_iσ_i/(2c_i + σ_i); Zᵀv = 0 fixes γ through
        (Zᵀ K Z) γ = Zᵀ K (y − a/σ). At a fixed point v = prox(v + σMW) this reads v_i = 2c_i(MW + Zγ − y)_i,
        the optimality condition of the full problem, so γ is the covariate coefficient itself.
        """
        two_c = 2 * self.c
        k = two_c * sigma / (two_c + sigma)  # (n, B); 0 where o_i = 0
        base = a / sigma - self.y  # (n, B)
        gamma = covariate_solve(self.Z, k, base).neg_()  # (B, q): −γ solves with base, γ with −base (exactly)
        return k * (base + covariate_term(self.Z, gamma)), gamma

    def row_norms2(self) -> torch.Tensor:
        """(n, 1) ‖x_i‖², the per-spot norm of M used for diagonal preconditioning (and by :meth:`adjoint_norm`)."""
        if self._x2 is None:
            self._x2 = (self.X * self.X).sum(1, keepdim=True)
        return self._x2

    def covariate_norm2(self, sigma_v: torch.Tensor) -> torch.Tensor | None:
        """(B,) λ_max(Zᵀ diag(σ_v) Z): the covariate block's share of the step condition."""
        if self.Z is None:
            return None
        G = torch.einsum("nb,nq,nr->bqr", sigma_v, self.Z, self.Z)
        return torch.linalg.eigvalsh(G)[:, -1].clamp_min(0)


def covariate_solve(Z: torch.Tensor, w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(B, q) γ with (Zᵀ diag(w_b) Z) γ_b = Zᵀ diag(w_b) r_b for each problem b: the covariates' weighted normal
    equations, solved in this one place for the PDHG's dual prox (w = k, r = a/σ − y, every step) and the
    certificates' covariate optimum (w = c, r = y − ŷ). Z (n, q), w and r (n, B). A ridge of 1e-12 × the largest
    diagonal entry keeps a covariate that no weighted spot sees at 0 instead of dividing by zero.

    One covariate (the intercept, the usual case) is a division, not an einsum and a batched q × q solve: 7 % of
    a fold job's CPU, 417 → 194 µs a PDHG step at 2,870 spots × 10 problems (benchmarks/README.md, session 15)."""
    if Z.shape[1] == 1:
        wz = w * Z  # (n, B)
        G = (wz * Z).sum(0)  # (B,)
        G = G + 1e-12 * torch.clamp(G, min=torch.finfo(G.dtype).tiny)
        return ((wz * r).sum(0) / G).unsqueeze(-1)
    ZW = torch.einsum("nq,nb->bqn", Z, w)  # (B, q, n)
    G = ZW @ Z  # (B, q, q)
    eye = torch.eye(Z.shape[1], dtype=G.dtype, device=G.device)
    ridge = 1e-12 * torch.clamp(torch.diagonal(G, dim1=1, dim2=2).amax(-1), min=torch.finfo(G.dtype).tiny)
    return torch.linalg.solve(G + ridge.view(-1, 1, 1) * eye, ZW @ r.T.unsqueeze(-1)).squeeze(-1)


def covariate_term(Z: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """(n, B) Zγᵀ; one covariate by a broadcast product, the same numbers as the (n, 1) @ (1, B) product at half its
    cost where B is small (10⁵ spots, one problem: 41 against 83 µs)."""
    return Z * gamma.T if Z.shape[1] == 1 else Z @ gamma.T
