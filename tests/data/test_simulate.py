"""The simulation must reproduce the paper's layouts and a ground truth that scores can rely on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from s3r.errors import S3RInputError
from s3r.io import read_h5ad, read_reference_csv
from s3r.simulate import (
    COEF_RANGE,
    DESIGNS,
    EXPRESSION_INTERCEPT,
    EXPRESSION_PROGRAMMES,
    GEOMETRIES,
    LAYOUTS,
    N_INFORMATIVE,
    Simulation,
    load_geometry,
    load_layout,
    simulate,
    simulate_target,
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


# ---------------------------------------------------------------------------------------------------------
# Designs: the reference design is frozen, the expression design has the moments it promises
# ---------------------------------------------------------------------------------------------------------


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


# Computed from the simulator before the expression design existed (commit c097769), so the reference design,
# which every earlier benchmark used, stays bit-identical for a seed. X, W, coords and regions are pure random
# draws (hashed); y goes through a dot product, so it is checked to 1e-12 rather than by its bytes.
REFERENCE_FROZEN = [
    (
        ("three_regions", {"sigma": 1.0, "seed": 0}),
        {"X": "42086d4985b1da81", "W": "f69ad147fb801a59", "coords": "326c1bcc913a284d", "regions": "d85ab891031f6c4d"},
        -8126.076200224252,
        [90.13932036855998, 11.337396865783713, -100.15779854260606],
        {0: [12, 28, 50, 69, 94], 1: [25, 50, 73, 88, 94], 2: [17, 25, 80, 88, 91]},
    ),
    (
        ("five_regions", {"sigma": 0.5, "seed": 3}),
        {"X": "68e02a22b01deb4f", "W": "1f30f3baf45932e9", "coords": "b0e8e1ddf0b4a008", "regions": "7126a9bef3083182"},
        -1233.421884517668,
        None,
        {0: [11, 21, 28, 37, 69], 1: [4, 11, 12, 21, 53], 2: [12, 13, 53, 62, 70], 3: [13, 16, 62, 83, 90],
         4: [9, 48, 68, 83, 90]},
    ),
    (
        ("four_quadrants", {"geometry": "dlpfc_151673", "n_spots": 300, "seed": 0, "sigma": 2.0}),
        {"X": "00698f41502285a7", "W": "fe7f82fa001e1d6e", "coords": "c361e207c615d121", "regions": "36ae70fe28210074"},
        -959.0360827252268,
        None,
        {0: [34, 40, 59, 79, 81], 1: [4, 27, 38, 59, 79], 2: [4, 26, 30, 38, 97], 3: [26, 30, 41, 52, 70]},
    ),
]


@pytest.mark.parametrize("call, hashes, y_sum, y_head, informative", REFERENCE_FROZEN)
def test_reference_design_is_frozen(call, hashes, y_sum, y_head, informative):
    layout, kwargs = call
    for sim in (simulate(layout, **kwargs), simulate(layout, design="reference", **kwargs)):
        assert {k: _sha(getattr(sim, k)) for k in hashes} == hashes
        assert np.isclose(sim.y.sum(), y_sum, rtol=1e-12, atol=0)
        if y_head is not None:
            np.testing.assert_allclose(sim.y[:3], y_head, rtol=1e-12)
        assert sim.informative == informative
        assert sim.design == "reference" and sim.intercept == 0.0 and sim.coef_scale == 1.0
        np.testing.assert_array_equal(sim.signal, np.einsum("ij,ij->i", sim.X, sim.W))


def test_design_is_checked():
    assert DESIGNS == ("reference", "expression")
    with pytest.raises(S3RInputError, match="expression"):
        simulate(design="expresion")
    with pytest.raises(S3RInputError, match="intercept"):
        simulate(design="expression", intercept="high")
    with pytest.raises(S3RInputError, match="intercept"):
        simulate(design="expression", intercept=float("nan"))


@pytest.fixture(scope="module")
def expr():
    return simulate("six_regions", sigma=1.0, seed=0, design="expression")


def test_expression_features_look_like_log_expression(expr):
    X = expr.X
    assert expr.design == "expression" and X.shape == (2000, 100)
    # log1p of counts: non-negative, a share of exact zeros (dropouts), integers before the log
    assert X.min() == 0.0 and np.all(X >= 0)
    assert 0.05 < np.mean(X == 0) < 0.5
    np.testing.assert_allclose(np.expm1(X), np.round(np.expm1(X)), atol=1e-9)
    # unit scale: every feature varies, none is wildly larger than 1
    sd, mean = X.std(axis=0), X.mean(axis=0)
    assert sd.min() > 0.2 and sd.max() < 1.5 and 0.6 < np.median(sd) < 1.1
    assert 0.2 < mean.min() and mean.max() < 3.5
    # correlated: a block structure from the shared programmes, far from the independent reference design
    R = np.corrcoef(X.T)
    off = R[~np.eye(X.shape[1], dtype=bool)]
    assert np.percentile(off, 99) > 0.4 and off.min() > -0.2
    strong = (R > 0.3) & ~np.eye(X.shape[1], dtype=bool)
    # each feature is strongly correlated with about the others of its programme (p / 5 - 1 = 19 on average)
    per_feature = strong.sum(axis=1)
    assert 8 < np.median(per_feature) < 35
    ref = simulate("six_regions", sigma=1.0, seed=0).X
    assert np.abs(np.corrcoef(ref.T)[~np.eye(100, dtype=bool)]).max() < 0.15
    assert EXPRESSION_PROGRAMMES == 5


@pytest.mark.parametrize("layout", ["three_regions", "six_regions"])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_expression_signal_r2_follows_sigma(layout, sigma):
    sim = simulate(layout, sigma=sigma, seed=0, design="expression")
    assert np.isclose(sim.signal.std(), 1.0, rtol=1e-12)
    assert sim.intercept == EXPRESSION_INTERCEPT
    r2 = 1 - np.var(sim.y - sim.intercept - sim.signal) / np.var(sim.y)
    assert abs(r2 - 1 / (1 + sigma**2)) < 0.04
    noise = sim.y - sim.intercept - sim.signal
    assert abs(noise.std() / sigma - 1) < 0.1
    assert abs(sim.y.mean() - sim.intercept - sim.signal.mean()) < 4 * sigma / np.sqrt(sim.n_spots)


def test_expression_shares_truth_structure_with_reference():
    """Same seed: same spots, regions, informative features, signs and relative magnitudes; W only rescaled."""
    ref = simulate("four_quadrants", sigma=1.0, seed=2)
    exp = simulate("four_quadrants", sigma=1.0, seed=2, design="expression")
    assert np.array_equal(ref.coords, exp.coords) and np.array_equal(ref.regions, exp.regions)
    assert ref.informative == exp.informative
    assert 0 < exp.coef_scale < 0.05
    np.testing.assert_allclose(exp.W, ref.W * exp.coef_scale, rtol=1e-12)
    # effects comparable to the noise: |w| of order 0.1-1 on features of sd ~1
    nz = np.abs(exp.W[exp.W != 0])
    assert 0.05 < nz.min() and nz.max() < 1.0
    # piecewise constant by region, five informative features each
    for r, support in exp.informative.items():
        rows = exp.W[exp.regions == r]
        assert np.array_equal(rows, np.broadcast_to(rows[0], rows.shape))
        assert np.flatnonzero(rows[0]).tolist() == support and len(support) == N_INFORMATIVE


def test_expression_determinism_and_streams():
    a = simulate("five_regions", sigma=0.5, seed=3, design="expression")
    b = simulate("five_regions", sigma=0.5, seed=3, design="expression")
    for u, v in zip(_arrays(a) + (a.signal,), _arrays(b) + (b.signal,)):
        assert np.array_equal(u, v)
    assert a.coef_scale == b.coef_scale
    c = simulate("five_regions", sigma=0.5, seed=4, design="expression")
    assert not np.array_equal(a.X, c.X) and not np.array_equal(a.W, c.W)
    # σ changes only the noise: same X and W, the noise scaled by the ratio
    d = simulate("five_regions", sigma=2.0, seed=3, design="expression")
    assert np.array_equal(a.X, d.X) and np.array_equal(a.W, d.W)
    np.testing.assert_allclose((a.y - a.intercept - a.signal) * 4, d.y - d.intercept - d.signal, atol=1e-12)
    # the intercept is only a shift
    e = simulate("five_regions", sigma=0.5, seed=3, design="expression", intercept=-1.0)
    np.testing.assert_allclose(e.y + 1.0, a.y - a.intercept, atol=1e-12)
    zero = simulate("five_regions", sigma=0.0, seed=3, design="expression")
    np.testing.assert_allclose(zero.y, zero.intercept + zero.signal, atol=1e-12)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_expression_on_real_geometry(name):
    sim = simulate("three_regions", geometry=name, n_spots=500, seed=1, design="expression", sigma=1.0)
    ref = simulate("three_regions", geometry=name, n_spots=500, seed=1)
    assert sim.geometry == name and sim.n_spots == 500
    assert np.array_equal(sim.coords, ref.coords) and np.array_equal(sim.regions, ref.regions)
    assert np.isclose(sim.signal.std(), 1.0)
    assert len(set(sim.regions)) == 3


def test_expression_high_dimensional():
    sim = simulate("three_regions_highdim", seed=0, design="expression")
    assert sim.n_features == 300 > sim.n_spots
    assert np.isclose(sim.signal.std(), 1.0) and sim.X.min() == 0


def test_constant_signal_is_refused():
    with pytest.raises(S3RInputError, match="constant"):
        simulate("three_regions", geometry="uniform", n_spots=1, design="expression")


@pytest.mark.parametrize("design", DESIGNS)
def test_simulate_target(design):
    sim = simulate("four_quadrants", geometry="uniform", n_spots=400, sigma=1.0, seed=0, design=design)
    y, W = simulate_target(sim, seed=9)
    again = simulate_target(sim, seed=9)
    assert np.array_equal(y, again[0]) and np.array_equal(W, again[1])
    other = simulate("four_quadrants", geometry="uniform", n_spots=400, seed=9, design=design)
    # a second gene: the informative features the simulator picks for that seed, on this sample's regions
    for r, support in other.informative.items():
        assert np.flatnonzero(W[sim.regions == r][0]).tolist() == support
    assert not np.array_equal(W, sim.W)
    signal = np.einsum("ij,ij->i", sim.X, W)
    noise = y - sim.intercept - signal
    assert abs(noise.std() - 1.0) < 0.12
    if design == "expression":
        assert np.isclose(signal.std(), 1.0)
        assert sim.intercept == EXPRESSION_INTERCEPT
    else:
        assert 60 < signal.std() < 160
    y2, W2 = simulate_target(sim, seed=9, sigma=0.0)
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_allclose(y2, sim.intercept + signal, atol=1e-12)


def test_h5ad_records_the_design(tmp_path):
    sim = simulate("five_regions", seed=2, sigma=2.0, design="expression")
    path = write_h5ad(sim, tmp_path / "expr.h5ad")
    import anndata

    meta = anndata.read_h5ad(path).uns["s3r_simulation"]
    assert meta["design"] == "expression" and meta["sigma"] == 2.0
    assert meta["intercept"] == EXPRESSION_INTERCEPT and np.isclose(meta["coef_scale"], sim.coef_scale)
    data = read_h5ad(path, target="target", features=sim.feature_names)
    assert np.array_equal(data.X, sim.X) and np.array_equal(data.y, sim.y)
    ref = write_h5ad(simulate("five_regions", seed=2), tmp_path / "ref.h5ad")
    meta = anndata.read_h5ad(ref).uns["s3r_simulation"]
    assert meta["design"] == "reference" and meta["intercept"] == 0.0 and meta["coef_scale"] == 1.0


# ---------------------------------------------------------------------------------------------------------
# The workflow's demo writer (s3r.simulate_demo.simulate_demo, config 'demo.<name>.design')
# ---------------------------------------------------------------------------------------------------------


def _demo(tmp_path, spec, run="one"):
    from s3r.simulate_demo import simulate_demo

    names = {"x_csv": "X.csv", "y_csv": "Y.csv", "coords_csv": "coords.csv", "h5ad": "demo.h5ad"}
    paths = {k: str(tmp_path / run / v) for k, v in names.items()}
    simulate_demo(spec, **paths)
    return paths


DEMO_SPEC = {"layout": "four_quadrants", "geometry": "dlpfc_151673", "n_spots": 300, "n_features": 20,
             "sigma": 1.0, "seed": 12, "targets": ["ta", "tb", "tc"]}


def test_demo_expression_design(tmp_path):
    import anndata
    import pandas as pd

    spec = dict(DEMO_SPEC, design="expression")
    a, b = _demo(tmp_path, spec, "one"), _demo(tmp_path, spec, "two")
    for key in ("x_csv", "y_csv", "coords_csv"):
        assert Path(a[key]).read_bytes() == Path(b[key]).read_bytes()
    base = simulate("four_quadrants", geometry="dlpfc_151673", n_spots=300, n_features=20, sigma=1.0, seed=12,
                    design="expression")
    y = pd.read_csv(a["y_csv"], index_col=0)
    X = pd.read_csv(a["x_csv"], index_col=0).to_numpy().T
    np.testing.assert_allclose(X, base.X, rtol=1e-14)
    np.testing.assert_allclose(y["ta"].to_numpy(), base.y, rtol=1e-14)
    ad = anndata.read_h5ad(a["h5ad"])
    np.testing.assert_array_equal(ad[:, base.feature_names].X, base.X)
    assert ad.uns["s3r_demo"]["design"] == "expression"
    for t in ("ta", "tb", "tc"):
        W = ad.obsm[f"true_W_{t}"]
        signal = np.einsum("ij,ij->i", X, W)
        assert np.isclose(signal.std(), 1.0)  # every target in the expression scale, not only the first
        assert abs(np.std(y[t].to_numpy() - EXPRESSION_INTERCEPT - signal) - 1.0) < 0.15
    assert not np.allclose(y["tb"], y["tc"])


def test_demo_reference_design_unchanged(tmp_path):
    """No 'design' key and design 'reference' write the same bytes: the workflow's default demo stays as it was."""
    plain, ref = _demo(tmp_path, DEMO_SPEC, "plain"), _demo(tmp_path, dict(DEMO_SPEC, design="reference"), "ref")
    for key in ("x_csv", "y_csv", "coords_csv"):
        assert Path(plain[key]).read_bytes() == Path(ref[key]).read_bytes()
    import pandas as pd

    y = pd.read_csv(plain["y_csv"], index_col=0)
    assert 60 < y["tb"].std() < 200  # the reference scale, further targets included
