"""Maps over the tissue image when the input carries one; plain maps otherwise."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from s3r.report.style import spatial_scatter  # noqa: E402
from s3r.report.tissue import Tissue, load_tissue, tissue_from_uns  # noqa: E402


def _uns(images=("hires", "lowres")):
    return {"spatial": {"lib": {"images": {r: np.zeros((40 if r == "hires" else 10, 50, 3)) for r in images},
                                "scalefactors": {"tissue_hires_scalef": 0.1, "tissue_lowres_scalef": 0.025}}}}


def test_tissue_prefers_hires_and_needs_its_scale_factor():
    t = tissue_from_uns(_uns())
    assert t.resolution == "hires" and t.scale == 0.1 and t.image.shape == (40, 50, 3)
    assert tissue_from_uns(_uns(("lowres",))).resolution == "lowres"
    assert tissue_from_uns({}) is None and tissue_from_uns({"spatial": {}}) is None
    assert tissue_from_uns({"spatial": {"lib": {"images": {"hires": np.zeros((2, 2))}}}}) is None
    assert load_tissue(None) is None


def test_spots_are_drawn_on_the_image_in_full_resolution_pixels():
    coords = np.array([[100.0, 50.0], [300.0, 250.0], [200.0, 150.0]])
    tissue = Tissue(np.ones((40, 50, 3)), 0.1, "hires")
    fig, ax = plt.subplots()
    spatial_scatter(ax, coords, np.array([1.0, -1.0, 0.5]), center_zero=True, tissue=tissue)
    assert len(ax.images) == 1 and ax.images[0].get_extent() == pytest.approx([0, 500, 400, 0])
    lo, hi = ax.get_ylim()
    assert lo > hi and lo >= 250 and hi <= 50  # image rows run downwards; every spot inside the limits
    fig2, ax2 = plt.subplots()
    spatial_scatter(ax2, coords, np.array([1.0, -1.0, 0.5]))
    assert len(ax2.images) == 0
    lo2, hi2 = ax2.get_ylim()
    assert lo2 > hi2 and lo2 >= 250 and hi2 <= 50  # without the image the section is the same way up as over it
    plt.close("all")


def test_fit_report_and_domains_use_the_tissue(tmp_path, monkeypatch):
    import s3r.report.tissue as tissue_module
    from s3r import S3R
    from s3r.io import RegressionData
    from s3r.report.domains import plot_domains
    from s3r.report.fit_report import fit_report
    from s3r.results import write_fit

    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 400, size=(60, 2))
    X = rng.normal(size=(60, 3))
    y = X[:, 0] * (coords[:, 0] > 200) + rng.normal(scale=0.1, size=60)
    data = RegressionData(X, y, coords, [f"s{i}" for i in range(60)], ["a", "b", "c"], "t")
    write_fit(tmp_path / "fit", S3R("tv", 0.01, 0.01, 0.01, max_iter=200).fit(X, y, coords), data)
    calls = []
    real = tissue_module.draw_tissue
    monkeypatch.setattr(tissue_module, "draw_tissue", lambda ax, t, c: (calls.append(len(c)), real(ax, t, c)))
    tissue = Tissue(np.ones((45, 45, 3)), 0.1, "hires")
    files = fit_report(tmp_path / "fit", tmp_path / "report", tissue=tissue)
    assert files["coefficient_maps"].is_file() and calls and set(calls) == {60}
    calls.clear()
    plot_domains(coords, np.arange(60) % 3, tmp_path / "domains.png", tissue=tissue)
    assert calls == [60]
