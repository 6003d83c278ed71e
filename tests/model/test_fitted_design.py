"""A fitted S3R keeps no copy of the design: the standardised n × p float64 matrix is the solve's alone."""

from __future__ import annotations

import dataclasses
import gc
import weakref

import numpy as np
import pytest
import torch

import s3r.problem as problem_mod
from s3r import S3R
from s3r.errors import S3RInputError
from s3r.simulate import simulate


def _reachable(obj, seen=None):
    """Every numpy array and torch tensor reachable from ``obj`` through attributes, dataclass fields, dicts and
    sequences (the estimator's state as a user or pickle sees it)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return
    seen.add(id(obj))
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        yield obj
        return
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        children = list(obj)
    elif dataclasses.is_dataclass(obj):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif hasattr(obj, "__dict__"):
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        yield from _reachable(child, seen)


@pytest.fixture(scope="module")
def sim():
    return simulate("three_regions", geometry="uniform", n_spots=150, n_features=20, sigma=1.0, seed=4)


@pytest.mark.parametrize("dtype", ["float64", "mixed"])
def test_the_standardised_design_is_freed_after_the_fit(sim, dtype, monkeypatch):
    made = []
    scaled = problem_mod.scaled_features

    def watch(X, model, penalty_factor):
        out = scaled(X, model, penalty_factor)
        made.append(weakref.ref(out[0]))
        return out

    monkeypatch.setattr(problem_mod, "scaled_features", watch)
    X = sim.X.copy()
    model = S3R(smooth="tv", lambda_smooth=0.3, alpha=0.002, beta=0.01, tol=1e-6, device="cpu", dtype=dtype).fit(X, sim.y, sim.coords)
    gc.collect()
    assert len(made) == 1 and made[0]() is None  # nothing holds the standardised copy once fit returns
    assert np.array_equal(X, sim.X)  # the user's array untouched

    n, p = X.shape
    arrays = [a for a in _reachable(model) if isinstance(a, np.ndarray) and a.size >= n * p]
    assert len(arrays) == 1 and arrays[0] is model.coef_  # the one n × p array is the coefficients predict needs
    tensors = [t for t in _reachable(model) if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.numel() >= n * p]
    assert not tensors  # no solver state either: that is kept only for warm_start=True refits
    warm = S3R(smooth="tv", lambda_smooth=0.3, alpha=0.002, beta=0.01, tol=1e-6, device="cpu", dtype=dtype, warm_start=True).fit(X, sim.y, sim.coords)
    tensors = [t for t in _reachable(warm) if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.numel() >= n * p]
    assert {id(t) for t in tensors} <= {id(warm._result.W), id(warm._result.dual)}  # W and the edges × p dual, solver's scale
    np.testing.assert_allclose(model.predict(X), np.einsum("np,np->n", X, model.coef_) + model.intercept_)


def test_the_kept_problem_maps_back_and_says_its_design_is_gone(sim):
    model = S3R(smooth="tv", lambda_smooth=0.3, alpha=0.002, beta=0.01, tol=1e-6, device="cpu", warm_start=True).fit(sim.X, sim.y, sim.coords)
    kept = model.problem_
    assert kept.X is None and kept.n_spots == sim.X.shape[0]
    W = model._result.W[:, 0, :].double().numpy()
    assert np.array_equal(kept.coefficients(W)[0], model.coef_)  # the maps back to the user's scale stay
    assert kept.free_rows().shape == (sim.X.shape[0],)
    with pytest.raises(S3RInputError, match="released"):
        kept.natural_scales()


def test_warm_start_switched_on_after_a_cold_fit_starts_cold(sim):
    """A model fitted without warm_start keeps no solver state; switching warm_start on refits from scratch."""
    model = S3R(smooth="tv", lambda_smooth=0.3, alpha=0.002, beta=0.01, tol=1e-6, device="cpu").fit(sim.X, sim.y, sim.coords)
    assert model._result.W is None and model._result.dual is None and model.report_["working_set_size"] is not None
    first = model.coef_.copy()
    model.set_params(warm_start=True).fit(sim.X, sim.y, sim.coords)
    np.testing.assert_allclose(model.coef_, first, atol=1e-4 * np.abs(first).max())
