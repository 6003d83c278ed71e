"""``s3r deconvolve``: spatially regularised cell-type deconvolution of one sample.

Reads per-spot cell-type likelihood scores (``--scores``), or spot counts with a reference of cell-type mean
profiles (``--counts`` + ``--reference``, scored with a Poisson likelihood), and spot coordinates; writes
the mixtures X, the dictionary B, the proportions X Bᵀ (usable as S3R features), the learned edge weights
and a JSON record of the fit.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from s3r import __version__
from s3r.errors import S3RInputError

_COORDINATE_PAIRS = (("x", "y"), ("row", "col"), ("array_row", "array_col"), ("imagerow", "imagecol"))


def add_parser(subparsers):
    p = subparsers.add_parser(
        "deconvolve",
        help="cell-type mixtures smoothed over the tissue (graph TV)",
        description=__doc__.replace("``", "`"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = p.add_argument_group("input (scores, or counts with a reference)")
    inputs.add_argument("--scores", metavar="S.csv", help="spots × cell types likelihood scores (≥ 0, e.g. RCTD)")
    inputs.add_argument("--counts", metavar="COUNTS.csv", help="spots × genes counts (with --reference)")
    inputs.add_argument("--reference", metavar="REF.csv", help="cell types × genes mean expression (with --counts)")
    inputs.add_argument("--temperature", type=float, default=1.0, help="divide Poisson log-likelihoods by this (default 1)")
    inputs.add_argument("--coords", metavar="C.csv", required=True, help="spots × coordinates (x, y or row, col)")
    inputs.add_argument("--coord-columns", metavar="A,B", help="the two coordinate columns when C.csv has more")
    model = p.add_argument_group("model")
    model.add_argument("--components", type=int, required=True, metavar="D", help="number of mixture components")
    model.add_argument("--lambda", dest="lambda_smooth", type=float, default=10.0, metavar="L", help="spatial weight λ (default 10)")
    model.add_argument("--graph", choices=("delaunay", "mst"), default="delaunay", help="spot graph (default delaunay)")
    model.add_argument("--max-edge-length", type=float, help="drop longer Delaunay edges, in coordinate units")
    model.add_argument("--w-min", type=float, default=0.05, help="lower bound on edge weights (default 0.05)")
    model.add_argument("--w-max", type=float, default=1.0, help="upper bound on edge weights (default 1)")
    model.add_argument("--fixed-weights", action="store_true", help="keep edge weights at 2/(deg_i + deg_j), no LP")
    model.add_argument("--eps", type=float, default=1e-3, help="floor of the simplex for X rows and B columns (default 1e-3)")
    model.add_argument("--penalty", choices=("tv", "soft_l1"), default="tv", help="exact TV (default) or soft-L1 √(u²+δ)")
    model.add_argument("--delta", type=float, default=1e-6, help="δ of the soft-L1 penalty (default 1e-6)")
    solver = p.add_argument_group("solver")
    solver.add_argument("--tol", type=float, default=1e-4, help="relative objective change to stop at (default 1e-4)")
    solver.add_argument("--max-iter", type=int, default=100, help="outer iterations (default 100)")
    solver.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    solver.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    solver.add_argument("--seed", type=int, default=0, help="seed of the k-means initialisation (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _read_table(path: str, what: str, row_kind: str, col_kind: str) -> pd.DataFrame:
    from s3r.io import _read_table as read_table  # one CSV reader for the package: same checks, same messages

    return read_table(path, what, row_kind, col_kind)


def _coordinates(path: str, columns: str | None) -> pd.DataFrame:
    table = _read_table(path, "coordinates", "spot", "coordinate")
    if columns:
        chosen = [c.strip() for c in columns.split(",")]
        missing = [c for c in chosen if c not in table.columns]
        if len(chosen) != 2 or missing:
            raise S3RInputError(
                f"{path}: --coord-columns must name two of its columns ({', '.join(table.columns)}), got {columns!r}"
            )
        return table[chosen]
    if table.shape[1] == 2:
        return table
    lower = {str(c).lower(): c for c in table.columns}
    for a, b in _COORDINATE_PAIRS:
        if a in lower and b in lower:
            return table[[lower[a], lower[b]]]
    raise S3RInputError(
        f"{path}: {table.shape[1]} columns ({', '.join(map(str, table.columns[:6]))}) and no x/y or row/col pair; "
        "pass --coord-columns A,B"
    )


def _align(coords: pd.DataFrame, coords_path: str, spot_ids: list[str], spots_path: str) -> pd.DataFrame:
    """Coordinates in the scores' spot order; every spot must appear in both files."""
    known = set(coords.index)
    missing = [s for s in spot_ids if s not in known]
    if missing:
        raise S3RInputError(
            f"{coords_path} lacks {len(missing)} spot(s) of {spots_path} ({', '.join(missing[:3])}"
            f"{' …' if len(missing) > 3 else ''}); use the same spot ids in both files"
        )
    extra = len(coords) - len(spot_ids)
    if extra > 0:
        print(f"s3r deconvolve: note: ignoring {extra} spot(s) of {coords_path} not in {spots_path}", file=sys.stderr)
    return coords.loc[spot_ids]


def _oriented(table: pd.DataFrame, row_ids: set, path: str, rows: str, columns: str) -> pd.DataFrame:
    """Accept a table written the other way round when its columns, not its rows, carry the expected ids."""
    if len(row_ids & set(table.columns)) > len(row_ids & set(table.index)):
        return table.T
    return table


def _scores_from_args(args, coords_ids: set) -> tuple[pd.DataFrame, dict]:
    from s3r.deconv.scores import poisson_scores

    if args.scores and (args.counts or args.reference):
        raise S3RInputError("give either --scores or --counts with --reference, not both")
    if args.scores:
        scores = _read_table(args.scores, "scores", "spot", "cell type")
        return scores, {"scores": args.scores}
    if not (args.counts and args.reference):
        raise S3RInputError("missing input: pass --scores S.csv, or both --counts COUNTS.csv and --reference REF.csv")
    counts = _oriented(_read_table(args.counts, "counts", "spot", "gene"), coords_ids, args.counts, "spots", "genes")
    reference = _read_table(args.reference, "reference", "cell type", "gene")
    genes = set(map(str, counts.columns))
    if len(genes & set(reference.index)) > len(genes & set(reference.columns)):
        reference = reference.T  # written genes × cell types
    scores = poisson_scores(
        counts, reference, temperature=args.temperature, source_counts=args.counts, source_reference=args.reference
    )
    return scores, {"counts": args.counts, "reference": args.reference, "temperature": args.temperature}


def run(args) -> int:
    import torch

    from s3r.deconv import Deconvolution
    from s3r.io import write_csv, write_json

    coords_table = _coordinates(args.coords, args.coord_columns)
    scores, inputs = _scores_from_args(args, set(coords_table.index))
    spots_path = args.scores or args.counts
    spot_ids = [str(s) for s in scores.index]
    coords = _align(coords_table, args.coords, spot_ids, spots_path)

    model = Deconvolution(
        args.components,
        lambda_smooth=args.lambda_smooth,
        graph=args.graph,
        max_edge_length=args.max_edge_length,
        eps=args.eps,
        w_min=args.w_min,
        w_max=args.w_max,
        learn_weights=not args.fixed_weights,
        penalty=args.penalty,
        delta=args.delta,
        tol=args.tol,
        max_iter=args.max_iter,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        verbose=not args.quiet,
    )
    model.fit(scores, coords)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    components = model.component_names()
    spots = pd.Index(spot_ids, name="spot")
    cell_types = pd.Index(model.cell_types_, name="cell_type")
    write_csv(pd.DataFrame(model.mixture_, index=spots, columns=components), out / "mixture.csv")
    write_csv(pd.DataFrame(model.dictionary_, index=cell_types, columns=components), out / "dictionary.csv")
    write_csv(pd.DataFrame(model.proportions_, index=spots, columns=cell_types), out / "proportions.csv")
    edges = model.graph_.edges
    write_csv(
        pd.DataFrame(
            {
                "spot_a": np.asarray(spot_ids, dtype=object)[edges[:, 0]],
                "spot_b": np.asarray(spot_ids, dtype=object)[edges[:, 1]],
                "weight": model.edge_weights_,
            }
        ),
        out / "edge_weights.csv",
        index=False,
    )
    if "counts" in inputs:
        write_csv(scores.rename_axis("spot"), out / "scores.csv")
    report = dict(model.report_)
    report.update(
        {
            "inputs": {**inputs, "coords": args.coords},
            "parameters": {
                "components": args.components,
                "lambda": args.lambda_smooth,
                "graph": args.graph,
                "max_edge_length": args.max_edge_length,
                "w_min": args.w_min,
                "w_max": args.w_max,
                "fixed_weights": args.fixed_weights,
                "eps": args.eps,
                "penalty": args.penalty,
                "delta": args.delta,
                "tol": args.tol,
                "max_iter": args.max_iter,
                "seed": args.seed,
            },
            "versions": {"s3r": __version__, "torch": torch.__version__, "python": platform.python_version()},
        }
    )
    write_json(report, out / "deconvolve.json")
    if not args.quiet:
        state = "converged" if model.report_["converged"] else "stopped at --max-iter"
        print(
            f"s3r deconvolve: {state} after {model.n_iter_} iterations in {model.report_['seconds']:.1f} s; "
            f"wrote {out}/mixture.csv, dictionary.csv, proportions.csv, edge_weights.csv, deconvolve.json",
            file=sys.stderr,
        )
    return 0
