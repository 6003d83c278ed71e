"""The covariates' profile (γ*(W) by Newton) stops where its precision ends: float32 tuning solves call it at every
iterate, and a stop rule finer than float32 can resolve ran all 50 Newton steps with 30 halvings each (session 32:
one DLPFC fold's trend yardstick 91 s → 3 s)."""

import numpy as np
import pytest
import torch

from s3r.glm.families import get_family
from s3r.solver.glm_loss import GLMLoss


def _datafit(dtype, family="negative_binomial", n=3000, B=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    off = np.log(rng.uniform(200, 2000, n))
    Z = np.c_[np.ones(n), rng.normal(size=n)]  # an intercept and one covariate
    eta = -4.2 + 0.3 * Z[:, 1] + off
    Y = rng.negative_binomial(5, 5 / (5 + np.exp(eta))[:, None], size=(n, B)).astype(float)
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    fam = get_family(family, 5.0 if family == "negative_binomial" else None)
    df = GLMLoss(t(X), t(Y), t(np.ones((n, B))), t(Z), fam, t(np.broadcast_to(off[:, None], (n, B)).copy()))
    W = t(0.05 * rng.normal(size=(n, B, 2)))
    return df, W


class _Counting:
    """Counts the profile's evaluations of φ (its line search's ``Family.nll``)."""

    def __init__(self, df):
        self.calls = 0
        self.nll = df.family.nll
        df.family.nll = self

    def __call__(self, y, eta):
        self.calls += 1
        return self.nll(y, eta)


@pytest.mark.parametrize("family", ["negative_binomial", "poisson"])
def test_float32_profile_reaches_the_optimum_in_a_few_newton_steps(family):
    df64, W64 = _datafit(torch.float64, family)
    g64, _ = df64.profile_covariates(W64, torch.zeros((4, 2), dtype=torch.float64))
    df32, W32 = _datafit(torch.float32, family)
    count = _Counting(df32)
    g32, pred = df32.profile_covariates(W32, torch.zeros((4, 2), dtype=torch.float32))
    # the float64 optimum to float32's resolution, and stationary to it
    np.testing.assert_allclose(g32.double().numpy(), g64.numpy(), rtol=2e-5, atol=2e-5)
    grad = (df32.gradient(pred).T @ df32.Z).double()
    scale = (2 * df32.c * df32.family.weight(df32.y, df32._shifted(pred))).sum(0).double()  # the intercept's curvature
    assert float((grad[:, 0].abs() / scale).max()) < 1e-5, float((grad[:, 0].abs() / scale).max())
    # Newton from γ = 0 needs ~10 steps here; the old rule ran 50 with up to 30 halvings each (≈ 400 evaluations)
    assert count.calls <= 40, count.calls


def test_profile_is_warm_started_at_its_optimum_without_a_search():
    df, W = _datafit(torch.float32)
    g, _ = df.profile_covariates(W, torch.zeros((4, 2), dtype=torch.float32))
    count = _Counting(df)
    g2, _ = df.profile_covariates(W, g)
    np.testing.assert_allclose(g2.numpy(), g.numpy(), rtol=1e-5, atol=1e-6)
    assert count.calls <= 6, count.calls
