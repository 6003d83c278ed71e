"""The simulation must reproduce the paper's layouts and a ground truth that scores can rely on."""

from __future__ import annotations

import numpy as np
import pytest

from s3r.errors import S3RInputError
from s3r.io import read_h5ad, read_reference_csv
from s3r.simulate import (
    COEF_RANGE,
    GEOMETRIES,
    LAYOUTS,
    N_INFORMATIVE,
    Simulation,
    load_geometry,
    load_layout,
    simulate,
    write_h5ad,
    write_reference_csv,
)

EXPECTED_POINTS = {
    "three_regions": (1000, 3),
    "four_quadrants": (2000, 4),
    "five_regions": (400, 5),
    "six_regions": (2000, 6),
    "three_regions_highdim": (200, 3),
    "four_regions_highdim": (400, 4),
}


def _arrays(sim: Simulation):
    return (sim.X, sim.y, sim.coords, sim.W, sim.regions)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_bundled_layouts(layout):
    df = load_layout(layout)
    n, r = EXPECTED_POINTS[layout]
    assert list(df.columns) == ["x", "y", "cluster"]
    assert len(df) == n
    assert sorted(df.cluster.unique()) == list(range(r))
    assert df[["x", "y"]].to_numpy().min() >= 0 and df[["x", "y"]].to_numpy().max() <= 1


@pytest.mark.parametrize("name, n", [("dlpfc_151507", 4226), ("dlpfc_151673", 3639), ("xenium_breast", 23218)])
def test_bundled_geometries(name, n):
    xy = load_geometry(name)
    assert xy.shape == (n, 2) and np.isfinite(xy).all()


def test_unknown_names_suggest():
    with pytest.raises(S3RInputError, match="three_regions"):
        simulate("three_region")
    with pytest.raises(S3RInputError, match="xenium_breast"):
        simulate(geometry="xenium_brest")
    with pytest.raises(S3RInputError, match="n_spots"):
        simulate(geometry="uniform")
    with pytest.raises(S3RInputError, match="n_features"):
        simulate("six_regions", n_features=10)
    with pytest.raises(S3RInputError, match="exceeds"):
        simulate("five_regions", n_spots=401)
    with pytest.raises(S3RInputError, match="sigma"):
        simulate(sigma=-1)


def test_determinism():
    a, b = simulate("five_regions", seed=3), simulate("five_regions", seed=3)
    for u, v in zip(_arrays(a), _arrays(b)):
        assert np.array_equal(u, v)
    assert a.informative == b.informative
    c = simulate("five_regions", seed=4)
    assert not np.array_equal(a.X, c.X)
    assert not np.array_equal(a.y, c.y)
    assert not np.array_equal(a.W, c.W)


def test_sigma_changes_only_noise():
    a, b = simulate("five_regions", sigma=0.5, seed=1), simulate("five_regions", sigma=2.0, seed=1)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.W, b.W)
    signal = np.einsum("ij,ij->i", a.X, a.W)
    assert np.allclose((a.y - signal) * 4, b.y - signal)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_geometry_and_truth(layout):
    sim = simulate(layout, sigma=1.0, seed=0)
    ref = load_layout(layout)
    n, r = EXPECTED_POINTS[layout]
    assert sim.n_spots == n and sim.n_regions == r
    assert np.array_equal(sim.coords, ref[["x", "y"]].to_numpy())
    assert np.array_equal(sim.regions, ref.cluster.to_numpy())
    if layout.endswith("highdim"):
        assert sim.n_features == round(1.5 * n) and sim.n_features > n
    else:
        assert sim.n_features == 100

    supports = []
    for region in range(r):
        rows = sim.W[sim.regions == region]
        # piecewise constant: every spot of a region carries the same coefficient vector
        assert np.array_equal(rows, np.broadcast_to(rows[0], rows.shape))
        support = np.flatnonzero(rows[0])
        assert support.tolist() == sim.informative[region]
        assert len(support) == N_INFORMATIVE
        mags = np.abs(rows[0, support])
        assert mags.min() >= COEF_RANGE[0] and mags.max() <= COEF_RANGE[1]
        supports.append(set(support.tolist()))
    # partial overlap: consecutive regions share features, but no two regions share a whole support
    for a in range(r):
        for b in range(a + 1, r):
            assert supports[a] != supports[b]
            assert not np.array_equal(sim.W[sim.regions == a][0], sim.W[sim.regions == b][0])
        if a + 1 < r:
            assert len(supports[a] & supports[a + 1]) == 2


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_noise_level(sigma):
    sim = simulate("six_regions", sigma=sigma, seed=7)
    resid = sim.y - np.einsum("ij,ij->i", sim.X, sim.W)
    assert abs(resid.std() / sigma - 1) < 0.1
    assert abs(resid.mean()) < 4 * sigma / np.sqrt(sim.n_spots)
    assert 60 < sim.y.std() < 160  # the reference example's scale (sd ≈ 108)
    assert np.allclose(simulate("six_regions", sigma=0.0, seed=7).y, np.einsum("ij,ij->i", sim.X, sim.W))


def _nearest_labels(coords, layout):
    ref = load_layout(layout)
    d = ((coords[:, None, :] - ref[["x", "y"]].to_numpy()[None]) ** 2).sum(-1)
    return ref.cluster.to_numpy()[d.argmin(1)]


def test_uniform_geometry():
    sim = simulate("four_quadrants", geometry="uniform", n_spots=300, seed=2)
    assert sim.coords.shape == (300, 2) and sim.geometry == "uniform"
    assert sim.coords.min() >= 0 and sim.coords.max() <= 1
    assert np.array_equal(sim.regions, _nearest_labels(sim.coords, "four_quadrants"))
    assert set(sim.regions) == {0, 1, 2, 3}


@pytest.mark.parametrize("name", GEOMETRIES)
def test_real_geometry(name):
    full = simulate("three_regions", geometry=name, seed=0)
    raw = load_geometry(name)
    assert full.n_spots == len(raw)
    # scaled into the unit square keeping the aspect ratio
    span = raw.max(0) - raw.min(0)
    got = full.coords.max(0) - full.coords.min(0)
    assert np.isclose(got.max(), 1.0) and np.allclose(got, span / span.max())
    assert full.coords.min() >= 0 and full.coords.max() <= 1 + 1e-12
    sub = simulate("three_regions", geometry=name, n_spots=250, seed=0)
    assert sub.n_spots == 250
    assert np.array_equal(sub.regions, _nearest_labels(sub.coords, "three_regions"))
    assert len(set(sub.regions)) == 3


def test_array_geometry():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 500, size=(120, 2)) * [1.0, 0.5]
    sim = simulate("three_regions", geometry=pts, seed=0)
    assert sim.geometry == "array" and sim.n_spots == 120
    assert np.array_equal(sim.regions, _nearest_labels(sim.coords, "three_regions"))
    # the order of spots is kept: scaled coordinates are an affine image of the input
    assert np.allclose(np.corrcoef(sim.coords[:, 0], pts[:, 0])[0, 1], 1.0)
    with pytest.raises(S3RInputError, match="shape"):
        simulate(geometry=np.zeros((5, 3)))


def test_reference_csv_round_trip(tmp_path):
    sim = simulate("five_regions", seed=5)
    paths = write_reference_csv(sim, tmp_path, prefix="sim_")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim_C.csv", "sim_X.csv", "sim_Y.csv"]
    with open(paths["X"]) as fh:
        assert fh.readline().startswith(",spot_1,spot_2,")
        assert fh.readline().startswith("feature_1,")
    assert open(paths["Y"]).readline().strip() == ",target"
    assert open(paths["coords"]).readline().strip() == ",row,col"
    data = read_reference_csv(paths["X"], paths["Y"], paths["coords"])
    assert np.array_equal(data.X, sim.X)
    assert np.array_equal(data.y, sim.y)
    assert np.array_equal(data.coords, sim.coords)
    assert data.spot_ids == sim.spot_ids and data.feature_names == sim.feature_names
    assert data.target_name == "target"


def test_h5ad_output(tmp_path):
    sim = simulate("three_regions_highdim", seed=1)
    path = write_h5ad(sim, tmp_path / "sim.h5ad")
    import anndata

    ad = anndata.read_h5ad(path)
    assert list(ad.var_names) == sim.feature_names + ["target"]
    assert np.array_equal(ad.obsm["true_W"], sim.W)
    assert np.array_equal(ad.obs["region"].astype(int).to_numpy(), sim.regions)
    meta = ad.uns["s3r_simulation"]
    assert meta["layout"] == "three_regions_highdim" and meta["seed"] == 1 and meta["sigma"] == 1.0
    data = read_h5ad(path, target="target", features=sim.feature_names)
    assert np.array_equal(data.X, sim.X) and np.array_equal(data.y, sim.y)
    assert np.array_equal(data.coords, sim.coords)
    assert data.spot_ids == sim.spot_ids
    assert [p.name for p in tmp_path.iterdir()] == ["sim.h5ad"]  # no temporary files left behind
