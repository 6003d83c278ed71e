"""The floor-simplex projection is exact: checked against brute force over supports."""

import itertools

import numpy as np
import pytest
import torch

import s3r.deconv.simplex as simplex
from s3r.deconv.simplex import check_floor, project_columns_floor_simplex, project_floor_simplex
from s3r.errors import S3RInputError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def brute_force_projection(v: np.ndarray, eps: float) -> np.ndarray:
    """Try every support: on support T the projection is v_T − θ with θ fixing the sum (KKT), floor elsewhere."""
    D = v.size
    radius = 1.0 - D * eps
    best, best_distance = None, np.inf
    for size in range(1, D + 1):
        for support in itertools.combinations(range(D), size):
            idx = list(support)
            theta = (v[idx].sum() - eps * size - radius) / size
            u = np.full(D, eps)
            u[idx] = v[idx] - theta
            if np.all(u >= eps - 1e-12):
                distance = np.sum((u - v) ** 2)
                if distance < best_distance:
                    best, best_distance = u, distance
    return best


def test_clipping_is_not_the_projection():
    # the earlier implementation clipped first and returned (0, 1); the Euclidean projection is (0.15, 0.85)
    out = project_floor_simplex(torch.tensor([[-0.5, 0.2]], dtype=torch.float64), eps=0.0)
    np.testing.assert_allclose(out.numpy(), [[0.15, 0.85]], atol=1e-15)


@pytest.fixture(params=["network", "sort"])
def path(request, monkeypatch):
    """Both ways of sorting: the compare–exchange network (many spots, few components) and torch.sort."""
    if request.param == "network":
        monkeypatch.setattr(simplex, "_NETWORK_MIN_NUMEL", 0)
    else:
        monkeypatch.setattr(simplex, "NETWORK_MAX", 0)
    return request.param


@pytest.mark.parametrize("D", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("eps", [0.0, 1e-3, 0.05])
def test_matches_brute_force(D, eps, path):
    rng = np.random.default_rng(D)
    values = rng.normal(scale=1.5, size=(40, D))
    values[:5] = values[:5].round(1)  # ties
    out = project_floor_simplex(torch.as_tensor(values), eps).numpy()
    expected = np.array([brute_force_projection(v, eps) for v in values])
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert np.all(out >= eps - 1e-15)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)


def test_sorting_network_and_sort_agree_at_scale():
    rng = np.random.default_rng(0)
    for D in (3, 16, 25):  # 25 > NETWORK_MAX falls back to torch.sort
        values = torch.as_tensor(rng.normal(size=(3000, D)))
        default = project_floor_simplex(values, 1e-3)
        reference = torch.as_tensor(np.array([brute_force_projection(v, 1e-3) for v in values.numpy()[:3]])) if D <= 3 else None
        if reference is not None:
            torch.testing.assert_close(default[:3], reference, rtol=0, atol=1e-12)
        on_the_other_path = simplex.NETWORK_MAX
        try:
            simplex.NETWORK_MAX = 0
            sorted_ = project_floor_simplex(values, 1e-3)
        finally:
            simplex.NETWORK_MAX = on_the_other_path
        torch.testing.assert_close(default, sorted_, rtol=0, atol=1e-14)
        assert torch.all(default >= 1e-3 - 1e-15)
        torch.testing.assert_close(default.sum(dim=1), torch.ones(3000, dtype=torch.float64))


def test_component_major_layout_and_columns_agree_with_rows():
    values = torch.randn(50, 4, dtype=torch.float64)
    rows = project_floor_simplex(values, 0.01)
    torch.testing.assert_close(project_floor_simplex(values.T.contiguous(), 0.01, dim=0), rows.T)
    torch.testing.assert_close(project_columns_floor_simplex(values.T.contiguous(), 0.01), rows.T)
    out = torch.empty_like(values)
    assert project_floor_simplex(values, 0.01, out=out) is out
    torch.testing.assert_close(out, rows)


def test_projection_is_idempotent_and_float32_works():
    values = torch.randn(100, 5)
    once = project_floor_simplex(values, 0.02)
    assert once.dtype == torch.float32
    torch.testing.assert_close(project_floor_simplex(once, 0.02), once, atol=1e-6, rtol=0)


def test_full_floor_is_a_single_point_and_overfull_floor_is_an_error():
    out = project_floor_simplex(torch.randn(3, 4, dtype=torch.float64), 0.25)
    torch.testing.assert_close(out, torch.full((3, 4), 0.25, dtype=torch.float64))
    with pytest.raises(S3RInputError, match="lower --eps to at most 0.25"):
        check_floor(0.3, 4, "mixtures")
    with pytest.raises(S3RInputError, match="eps must be ≥ 0"):
        check_floor(-1e-3, 4)


def test_the_network_serves_twenty_types_at_many_spots_and_agrees_with_the_sort(monkeypatch):
    """20 or 25 components over ≥ 10⁴ spots (the proportions mode's 100,000-spot case) take the network,
    which gives the sort's projection."""
    assert simplex._network_pays(20, 20 * 12_000) and simplex._network_pays(32, 32 * 10_000)
    assert not simplex._network_pays(20, 20 * 2_000) and not simplex._network_pays(33, 33 * 10**5)
    rng = np.random.default_rng(3)
    for D in (20, 25):
        values = torch.as_tensor(rng.normal(scale=0.2, size=(D, 12_000)) + 1.0 / D)
        values[:, :10] = values[:, :10].round(decimals=1)  # ties
        network = project_floor_simplex(values, 1e-4, dim=0)
        monkeypatch.setattr(simplex, "NETWORK_MAX_LARGE", 0)
        sorted_ = project_floor_simplex(values, 1e-4, dim=0)
        monkeypatch.undo()
        torch.testing.assert_close(network, sorted_, rtol=0, atol=1e-14)
        assert torch.all(network >= 1e-4 - 1e-15)
        torch.testing.assert_close(network.sum(dim=0), torch.ones(12_000, dtype=torch.float64))
