"""Coefficient maps' colour scale: isolated spots (dropouts, outlying cells) do not set it; domains and smooth peaks do."""

import numpy as np
import pytest

from s3r.report.fit_report import FitOutputs, plot_coefficient_maps
from s3r.report.style import colour_limit


def _grid(side=30):
    xx, yy = np.meshgrid(np.arange(side, dtype=float), np.arange(side, dtype=float))
    return np.column_stack([xx.ravel(), yy.ravel()])


def test_one_outlying_spot_does_not_set_the_scale_of_a_domain_map():
    xy = _grid()
    values = np.where(xy[:, 0] < 10, 0.2, 0.0)  # a white-matter-like domain at 0.2
    values[450] = 1.7  # one spot far beyond its neighbours (a dropout's coefficient)
    values[455] = -1.2
    limit, beyond = colour_limit(xy, values)
    assert limit == pytest.approx(0.2)
    assert beyond == 2


def test_a_small_domain_still_sets_the_scale():
    xy = _grid()
    values = np.full(len(xy), 0.05)
    patch = (np.abs(xy[:, 0] - 15) <= 1) & (np.abs(xy[:, 1] - 15) <= 1)  # nine spots, 1 % of the section
    values[patch] = 0.8
    assert colour_limit(xy, values) == (pytest.approx(0.8), 0)


def test_a_smooth_peak_and_a_map_of_isolated_spots_keep_their_largest_value():
    xy = _grid()
    smooth = np.exp(-((xy - 15.0) ** 2).sum(1) / 20.0)  # the peak spot is above every neighbourhood's median
    assert colour_limit(xy, smooth) == (pytest.approx(smooth.max()), 0)
    sparse = np.zeros(len(xy))
    sparse[[3, 300, 600]] = [0.4, -0.9, 0.1]
    assert colour_limit(xy, sparse) == (pytest.approx(0.9), 0)
    assert colour_limit(xy[:2], np.array([1.0, 2.0])) == (2.0, 0)
    assert colour_limit(np.zeros((0, 2)), np.zeros(0)) == (0.0, 0)


def test_the_maps_are_drawn_on_that_scale_and_say_which_spots_lie_beyond(tmp_path, monkeypatch):
    import s3r.report.style as style

    xy = _grid(20)
    W = np.zeros((len(xy), 2))
    W[:, 0] = np.where(xy[:, 1] < 8, 0.3, 0.02)
    W[77, 0] = 2.5
    W[:, 1] = 0.1 * xy[:, 0] / 19.0  # a smooth gradient: nothing clipped
    fit = FitOutputs(W=W, coords=xy, spot_ids=[f"s{i}" for i in range(len(xy))], feature_names=["QKI", "OLIG1"], report={})
    calls = []
    real = style.spatial_scatter
    monkeypatch.setattr(style, "spatial_scatter", lambda ax, coords, values, **kw: calls.append(kw) or real(ax, coords, values, **kw))
    paths = plot_coefficient_maps(fit, tmp_path / "maps.png", vector=None)
    assert paths["png"].is_file()
    first, second = calls
    assert first["vmax"] == pytest.approx(0.3) and first["extend"] == "both"
    assert first["title"].endswith("1 isolated spot beyond ±0.3 (up to +2.5)")
    assert second["vmax"] == pytest.approx(0.1) and second["extend"] == "neither" and "isolated" not in second["title"]


def test_a_sequential_scale_ends_where_neighbourhoods_do_and_names_the_spots_above(tmp_path, monkeypatch):
    import s3r.report.style as style
    from s3r.report.fit_report import plot_observed_vs_predicted
    from s3r.report.style import upper_colour_limit

    xy = _grid(20)
    y = np.where(xy[:, 1] < 6, 2.0, 0.1)  # a band of expression
    y[[50, 250]] = [9.0, 7.0]  # two cells far above their neighbours
    assert upper_colour_limit(xy, y, 0.0) == (pytest.approx(2.0), 2)
    assert upper_colour_limit(xy, np.minimum(y, 2.5), 0.0) == (pytest.approx(2.5), 0)  # within the margin: kept
    fit = FitOutputs(W=np.zeros((len(xy), 1)), coords=xy, spot_ids=[f"s{i}" for i in range(len(xy))], feature_names=["f"],
                     report={}, observed=y, fitted=np.minimum(y, 2.0))
    calls = []
    real = style.spatial_scatter
    monkeypatch.setattr(style, "spatial_scatter", lambda ax, coords, values, **kw: calls.append(kw) or real(ax, coords, values, **kw))
    plot_observed_vs_predicted(fit, tmp_path / "ovp.png", vector=None)
    observed, predicted = calls
    assert observed["vmax"] == predicted["vmax"] == pytest.approx(2.0) and observed["vmin"] == pytest.approx(0.1)
    assert observed["title"] == "observed\n2 isolated spots above 2 (up to 9)" and observed["extend"] == "max"
    assert predicted["title"] == "predicted" and predicted["extend"] == "neither"
