"""Figures and tables that answer "which features drive this target, and where?".

``style`` fixes the look and makes every figure byte-for-byte reproducible; ``fit_report`` draws the per
(sample, target) report of one fit (coefficient maps, heatmap by spatial domain, feature table with CV
stability, tuning evidence, convergence, observed vs predicted). Per-sample modules (domains, programmes,
deconvolution, summary) live beside them. Names are imported lazily so that ``import s3r.report`` stays cheap
and does not pull in matplotlib until a figure is drawn.
"""

from __future__ import annotations

import importlib

__all__ = ["fit_report", "load_fit", "feature_table", "plot_coefficient_maps", "observed_and_predicted", "spot_domains", "clustered_heatmap", "use_report_style", "save_figure",
           "spatial_scatter", "spot_size"]

_LAZY = {
    "fit_report": "s3r.report.fit_report",
    "load_fit": "s3r.report.fit_report",
    "feature_table": "s3r.report.fit_report",
    "plot_coefficient_maps": "s3r.report.fit_report",
    "observed_and_predicted": "s3r.report.fit_report",
    "spot_domains": "s3r.report.domains",
    "clustered_heatmap": "s3r.report.programmes",
    "use_report_style": "s3r.report.style",
    "save_figure": "s3r.report.style",
    "spatial_scatter": "s3r.report.style",
    "spot_size": "s3r.report.style",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 's3r.report' has no attribute {name!r}")
