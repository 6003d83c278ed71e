"""The count families in the primal–dual solver (s3r.solver.glm_loss): the conjugate's prox by Newton on the prox
points, against the squared loss's closed form, against its optimality conditions and scipy, in the regimes the
solver hands it (step sizes over ten decades, cold starts far from the answer), and the solve against cvxpy."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from s3r.glm.families import get_family
from s3r.graph import knn_graph
from s3r.solver import build_operator
from s3r.solver.datafit import SquaredLoss
from s3r.solver.glm_loss import GLMLoss
from s3r.solver.glm_batch import solve_glm_batch


def _counts(seed=0, n=400, B=3, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    off = np.log(rng.uniform(200, 2000, n))
    eta = -4.5 + rng.normal(0, 1, n) + off
    y = rng.negative_binomial(2, 2 / (2 + np.exp(eta))[:, None], size=(n, B)).astype(float)
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dtype)  # noqa: E731
    return rng, t, t(rng.normal(size=(n, 2))), t(y), t(np.broadcast_to(off[:, None], (n, B)).copy())


def test_the_gaussian_member_is_the_squared_loss():
    rng, t, X, _, _ = _counts()
    n, B = 400, 3
    y = t(rng.normal(size=(n, B)))
    o = t(rng.uniform(0, 2, size=(n, B)) * (rng.uniform(size=(n, B)) > 0.1))  # some spots held out (weight 0)
    Z = t(np.c_[np.ones(n), rng.normal(size=n)])
    a, sigma = t(rng.normal(size=(n, B)) * 1e-2), t(10 ** rng.uniform(-3, 3, size=(n, B)))
    sq, glm = SquaredLoss(X, y, o, Z), GLMLoss(X, y, o, Z, get_family("gaussian"))
    np.testing.assert_allclose(glm.dual_prox(a, sigma).numpy(), sq.dual_prox(a, sigma).numpy(), rtol=1e-9, atol=1e-14)
    v_glm, g_glm = glm.dual_prox_eliminated(a, sigma)
    v_sq, g_sq = sq.dual_prox_eliminated(a, sigma)
    np.testing.assert_allclose(g_glm.numpy(), g_sq.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(v_glm.numpy(), v_sq.numpy(), rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("family", ["negative_binomial", "poisson", "gamma"])
def test_prox_meets_its_optimality_conditions_and_matches_scipy(family):
    rng, t, X, y, off = _counts(1, n=60, B=2)
    if family == "gamma":
        y = y + 0.5
    n, B = y.shape
    fam = get_family(family, 0.8 if family == "negative_binomial" else None)
    Z = t(np.ones((n, 1)))
    o = t(np.ones((n, B)))
    a, sigma = t(rng.normal(size=(n, B)) * 1e-3), t(10 ** rng.uniform(-5, 3, size=(n, B)))
    loss = GLMLoss(X, y, o, Z, fam, off)
    v, gamma = loss.dual_prox_eliminated(a, sigma)
    # v = ∇φ(η*) at the prox points η* (kept for the next call's warm start): the per-spot condition
    # ∇φ(η*) + σ(η* − a/σ − Zγ) = 0 and the constraint Zᵀv = 0
    eta = loss._eta
    np.testing.assert_allclose(v.numpy(), (2 * loss.c * fam.gradient(y, eta + off)).numpy(), rtol=1e-12)
    F = v + sigma * (eta - a / sigma - Z @ gamma.T)
    newton = F.abs() / (2 * loss.c * fam.curvature(y, eta + off) + sigma)  # the η-step F still asks for
    assert float((newton / (1 + eta.abs())).max()) < 1e-10
    assert float((Z.T @ v).abs().max()) < 1e-10
    # Ψ(η, γ) minimised by scipy for the first problem
    b = 0
    yb, ob, ab, sb = (T[:, b].numpy() for T in (y, off, a, sigma))

    def psi(x):
        e, g = x[:n], x[n]
        val = 2 / n * fam.nll(torch.as_tensor(yb), torch.as_tensor(e + ob)).sum().item()
        return val + 0.5 * np.sum(sb * (e - g - ab / sb) ** 2)

    x0 = np.r_[np.log(np.maximum(yb, 0.5)) - ob, 0.0]
    ref = minimize(psi, x0, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20000})
    assert psi(np.r_[eta[:, b].numpy(), gamma[b, 0].item()]) <= ref.fun + 1e-9 * abs(ref.fun)


def test_prox_converges_from_a_cold_start_far_away_in_float32():
    """The regime that made a plain Newton run away: an NB spot with a tiny step (its prox point is nearly the spot's
    own ML value, where ℓ' is sigmoid-shaped) beside spots with enormous steps, started at 0 while the intercept is −5."""
    rng, t, X, y, off = _counts(2, n=3000, B=4, dtype=torch.float32)
    n, B = y.shape
    fam = get_family("negative_binomial", 1.0)
    sigma = t(np.where(rng.uniform(size=(n, B)) < 0.1, 1e5, 10 ** rng.uniform(-6, -3, size=(n, B))))
    loss = GLMLoss(X, y, t(np.ones((n, B))), t(np.ones((n, 1))), fam, off)
    v, gamma = loss.dual_prox_eliminated(torch.zeros((n, B)), sigma)
    assert torch.isfinite(v).all() and torch.isfinite(gamma).all()
    assert float((v.sum(0)).abs().max()) < 1e-5 * float(v.abs().sum(0).max())  # Zᵀv = 0 to float32's resolution
    eta = loss._eta
    F = v + sigma * (eta - gamma.T)  # a = 0
    newton = F.abs() / (2 * loss.c * fam.curvature(y, eta + off) + sigma)
    assert float((newton / (1 + eta.abs())).max()) < 1e-5  # float32: η holds ~7 digits
    assert float(gamma.min()) < -3  # the intercept's level, not the start's


def test_negative_binomial_with_an_eliminated_intercept_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(3)
    n, p, theta = 40, 2, 2.0
    coords = rng.uniform(size=(n, 2))
    X = rng.normal(size=(n, p))
    off = rng.normal(0, 0.3, n)
    y = rng.negative_binomial(theta, theta / (theta + np.exp(1.0 + 0.5 * X[:, 0] * (coords[:, 0] > 0.5) + off))).astype(float)
    g = knn_graph(coords, k=4)
    K = build_operator("tv", edges=g.edges, edge_weights=g.weights, n_nodes=n, device="cpu")
    lam, a, b = 0.02, 0.01, 0.005
    r = solve_glm_batch(X, y, family="negative_binomial", theta=theta, smooth="tv", operator=K, lambda_smooth=lam, alpha=a,
                        beta=b, covariates=np.ones((n, 1)), offset=off, tol=1e-7, max_iter=50_000, device="cpu")
    assert r.converged[0]
    W, c0 = cp.Variable((n, p)), cp.Variable()
    eta = cp.sum(cp.multiply(X, W), axis=1) + c0 + off
    nll = cp.sum(cp.multiply(y + theta, cp.logistic(eta - np.log(theta)))) - y @ eta  # (y+θ)log(θ+e^η) − yη + const
    const = np.sum((y + theta) * np.log(theta))
    A = g.incidence().toarray()
    obj = 2 / n * (nll + const) + lam * cp.sum(cp.abs(A @ W)) + a * cp.sum(cp.abs(W)) + b * np.sqrt(n) * cp.sum(cp.norm(W, 2, axis=0))
    ref = cp.Problem(cp.Minimize(obj))
    ref.solve(solver="CLARABEL")
    # the solver reports the mean deviance; cvxpy's objective holds the nll, which differs by the saturated model's value
    sat = 2 / n * get_family("negative_binomial", theta).nll(torch.as_tensor(y), torch.as_tensor(np.log(np.maximum(y, 1e-300)))).sum().item()
    assert abs((r.objective[0] + sat) - ref.value) <= 1e-5 * abs(ref.value), (r.objective[0] + sat, ref.value)
    assert float(r.gamma[0, 0]) == pytest.approx(c0.value, abs=1e-3)
