"""The log-link families' value, gradient and curvature agree with each other at every η a solver may try, including
beyond the mean's clamp (ETA_MAX): a line search compares values, a Newton step uses the derivatives, and a value that
disagrees with them there (it fell without bound) let the prox's intercept leap to η ≈ 100 on a real section."""

import numpy as np
import pytest
import torch

from s3r.glm.families import ETA_MAX, get_family


def _family(name):
    return get_family(name, 1.47 if name == "negative_binomial" else None)


@pytest.mark.parametrize("name", ["poisson", "negative_binomial", "gamma"])
def test_gradient_is_the_derivative_of_the_value_everywhere(name):
    fam = _family(name)
    eta = torch.linspace(-2 * ETA_MAX, 2 * ETA_MAX, 4001, dtype=torch.float64)
    for yv in (0.0, 0.5, 3.0, 250.0) if name != "gamma" else (0.5, 3.0, 250.0):
        y = torch.full_like(eta, yv)
        h = 1e-5
        fd = (fam.nll(y, eta + h) - fam.nll(y, eta - h)) / (2 * h)
        g = fam.gradient(y, eta)
        assert torch.isfinite(fam.nll(y, eta)).all() and torch.isfinite(g).all()
        smooth = (torch.abs(eta.abs() - ETA_MAX) > 2 * h).numpy()  # the value is C¹ at the clamp: no central difference across it
        np.testing.assert_allclose(fd.numpy()[smooth], g.numpy()[smooth], rtol=1e-6, atol=1e-6 * (1 + float(g.abs().max())) ** 0.5)
        # convex: the gradient never falls, so the value is bounded below by its minimum (no descent to −∞)
        assert float(torch.diff(g).min()) >= -1e-9 * (1 + float(g.abs().max()))


def test_negative_binomial_derivatives_are_its_closed_forms_without_a_clamp():
    """θ(μ − y)/(μ + θ) and θμ(y + θ)/(μ + θ)², computed through sigmoids: to rounding where μ is representable,
    finite (θ and 0) far beyond."""
    fam = _family("negative_binomial")
    th = 1.47
    eta = torch.linspace(-40, 25, 2001, dtype=torch.float64)
    y = torch.full_like(eta, 3.0)
    mu = torch.exp(eta)
    np.testing.assert_allclose(fam.gradient(y, eta).numpy(), (th * (mu - y) / (mu + th)).numpy(), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(fam.curvature(y, eta).numpy(), (th * mu * (y + th) / (mu + th) ** 2).numpy(), rtol=1e-12)
    far = torch.tensor([500.0, 1000.0], dtype=torch.float64)
    g, c = fam.gradient_curvature(torch.full_like(far, 3.0), far)
    assert torch.allclose(g, torch.full_like(far, th)) and torch.all(c < 1e-100)
    # ℓ = (y + θ) log(μ + θ) − yη → θη: rising with the gradient's slope, not falling (as with μ held at e^ETA_MAX)
    assert float(fam.nll(torch.full_like(far, 3.0), far)[1]) == pytest.approx(th * 1000, rel=1e-12)
