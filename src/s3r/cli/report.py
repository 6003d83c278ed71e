"""``s3r report``: the figures and tables of one fit, and one self-contained HTML page to open them in.

For users outside the workflow: point it at the directory ``s3r fit`` wrote (and the one ``s3r tune`` wrote,
with ``--keep-states`` for the per-fold stability of each feature; and the one ``s3r deconvolve`` wrote for
the same spots). The fit's input data (``--x/--y/--coords``, or ``--h5ad`` / ``--spaceranger`` / ``--xenium`` with
``--target --features``) are optional: with them observed vs predicted is recomputed from the coefficients, the input
prepared by the counts policy the fit recorded; without, the values ``s3r fit`` stored are used. Writes PNG + SVG figures, TSV tables and DIR/index.html (images embedded, so the page can be
mailed or archived as one file).
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

from s3r.cli.common import add_input_arguments, input_kind, load_input
from s3r.errors import S3RInputError

SECTIONS = (
    ("Coefficient maps", "coefficient_maps", "The leading features' coefficients per spot (diverging scale centred at zero)."),
    ("Heatmap by spatial domain", "heatmap", "Features × spots, spots grouped by k-means domains of their coefficient vectors."),
    ("Selected features", "features", "Mean |coefficient|, share of spots non-zero, and in how many CV folds each feature was selected."),
    ("Tuning: optimisation history", "tuning_history", "CV loss of each trial in run order, with the best so far."),
    ("Tuning: CV loss by parameter", "tuning_parameters", "CV loss against λ, α and β; the chosen trial circled."),
    ("Tuning: fold spread", "tuning_folds", "Mean CV loss ± standard error and the per-fold losses, best trial first."),
    ("Solver convergence", "convergence", "Objective and relative residuals of the final fit."),
    ("Observed vs predicted", "observed_vs_predicted", "One point per spot, and both as maps on one colour scale."),
    ("Deconvolution: cell-type proportions", "proportions", "Per cell type, on a shared 0–1 scale."),
    ("Deconvolution: dominant cell type", "regions", "The cell type with the largest proportion at each spot."),
    ("Deconvolution: learned edge weights", "edge_weights", "The graph-TV weights the deconvolution learned, on the spot graph."),
)


def add_parser(subparsers):
    p = subparsers.add_parser("report", help="figures, tables and an HTML page for one fit", description=__doc__)
    p.add_argument("--fit", required=True, metavar="DIR", help="directory written by s3r fit")
    p.add_argument("--tune", metavar="DIR", help="directory written by s3r tune (tuning evidence, fold stability)")
    p.add_argument("--deconv", metavar="DIR", help="directory written by s3r deconvolve for the same spots (maps drawn at the fit's coordinates)")
    add_input_arguments(p)
    p.add_argument("--max-features", type=int, default=6, help="coefficient maps drawn (default 6)")
    p.add_argument("--domains", type=int, metavar="K", help="spatial domains for the heatmap (default: chosen by silhouette)")
    p.add_argument("--title", default="", help="title on the figures and the page")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    return p


def run(args) -> int:
    from s3r.report.fit_report import fit_report

    if args.max_features < 1:
        raise S3RInputError(f"--max-features must be ≥ 1, got {args.max_features}")
    if args.tune is not None and not Path(args.tune).is_dir():
        raise S3RInputError(f"{args.tune}: --tune directory not found; pass the --out directory of s3r tune")
    if args.deconv is not None and not Path(args.deconv).is_dir():
        raise S3RInputError(f"{args.deconv}: --deconv directory not found; pass the --out directory of s3r deconvolve")
    data, source = None, "data"
    if any(getattr(args, name, None) for name in ("x", "y", "coords", "h5ad", "spaceranger", "xenium")):
        data, source = _fit_input(args)
    files = fit_report(args.fit, args.out, tune_dir=args.tune, data=data, data_source=str(source), max_features=args.max_features,
                       domains_k=args.domains, title=args.title)
    if args.deconv is not None:
        files.update(_deconvolution(args))
    page = write_index(files, Path(args.out) / "index.html", title=args.title or f"s3r report: {Path(args.fit).resolve().name}")
    print(f"[s3r report] {len(files)} figures and tables; open {page}", file=sys.stderr)
    return 0


def _fit_input(args):
    """The fit's input prepared as ``s3r fit`` prepared it — the counts policy and target sum its fit.json records — so
    observed and predicted are on the fit's scale (raw counts against log-scale predictions drew R² −0.15 for a fit of
    R² 0.715 on DLPFC MBP before session 38)."""
    from s3r.report.fit_report import read_fit_record

    record = read_fit_record(args.fit)
    policy = record.get("normalisation") or {}  # the fit's own policy wins over the flags' defaults
    as_fitted = argparse.Namespace(**{**vars(args), "normalisation": policy.get("policy") or args.normalisation,
                                      "target_sum": policy.get("target_sum") or args.target_sum})
    loaded = load_input(as_fitted, record.get("family"))
    path = input_kind(args)[1]
    fitted = record.get("target")
    if fitted is not None and loaded.data.target_name != str(fitted):
        raise S3RInputError(f"{path or args.y}: target {loaded.data.target_name!r} but {args.fit} is a fit of {fitted!r}; pass the fit's "
                            f"target (--target / --target-column {fitted})")
    return loaded.data, path or args.x  # the spots' file (the CSV triplet: X's columns)


def _deconvolution(args) -> dict[str, Path]:
    import pandas as pd

    from s3r.report.deconvolution import deconvolution_report
    from s3r.report.fit_report import load_fit

    fit = load_fit(args.fit)
    coords = pd.DataFrame(fit.coords, index=fit.spot_ids)
    drawn = deconvolution_report(args.deconv, Path(args.out), coords=coords, title=args.title)
    return {name: drawn[f"{name}_png"] for name in ("proportions", "regions", "edge_weights") if f"{name}_png" in drawn}


def _relative(target: Path, base: Path) -> str:
    """Link from the page to a file written beside it (relative, so the directory can be moved as a whole)."""
    import os

    return Path(os.path.relpath(Path(target).resolve(), Path(base).resolve())).as_posix()


def write_index(files: dict[str, Path], path: Path, *, title: str) -> Path:
    """One HTML page with a section per figure or table present in ``files`` (PNG embedded as base64)."""
    import pandas as pd

    from s3r.io import atomic_write

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>"]
    for heading, key, caption in SECTIONS:
        if key not in files:
            continue
        parts.append(f"<section id='{key}'><h2>{html.escape(heading)}</h2><p>{html.escape(caption)}</p>")
        target = Path(files[key])
        if target.suffix == ".png":
            data = base64.b64encode(target.read_bytes()).decode("ascii")
            parts.append(f"<img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'>")
            links = [f"<a href='{html.escape(_relative(v, path.parent))}'>{v.suffix[1:].upper()}</a>"
                     for v in (target.with_suffix(".svg"), target.with_suffix(".pdf")) if v.is_file()]
            if links:
                parts.append(f"<p class='files'>vector copy: {' '.join(links)}</p>")
        else:
            table = pd.read_csv(target, sep="\t" if target.suffix == ".tsv" else ",", keep_default_na=False)
            parts.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
            parts.append(f"<p class='files'>table: <a href='{html.escape(_relative(target, path.parent))}'>{html.escape(target.name)}</a></p>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    with atomic_write(path, "w") as fh:
        fh.write("\n".join(parts))
    return path
