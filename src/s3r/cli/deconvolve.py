"""``s3r deconvolve``: spatially regularised cell-type deconvolution of one sample.

Two modes. ``proportions`` (the default with ``--counts`` + ``--reference``): cell-type proportions per spot
fitted directly to the counts (Poisson or negative binomial, per-spot library size, per-gene platform
effects), smoothed by graph TV with learned edge weights, λ chosen by held-out genes unless ``--lambda`` is a
number; writes proportions.csv, transcript_fractions.csv, platform_effects.csv, lambda_cv.csv,
lambda_choice.csv, edge_weights.csv and deconvolve.json. ``components`` (with ``--scores``, or with
``--components D``): per-spot likelihood scores explained by D latent mixtures X and a dictionary B (the seed's
model); writes mixture.csv, dictionary.csv, proportions.csv (X Bᵀ), edge_weights.csv and deconvolve.json.
A reference is a CSV (cell types × genes, mean expression per cell) or an .h5ad of single cells with
``.obs['cell_type']`` (``--cell-type-key``), averaged per type.
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
    inputs.add_argument("--reference", metavar="REF", help="cell types × genes mean expression (.csv) or single cells (.h5ad)")
    inputs.add_argument("--cell-type-key", default="cell_type", help="the .obs column of an .h5ad reference (default cell_type)")
    inputs.add_argument("--temperature", type=float, default=1.0, help="components mode: divide Poisson log-likelihoods by this (default 1)")
    inputs.add_argument("--coords", metavar="C.csv", help="spots × coordinates (x, y or row, col); not with --spaceranger/--xenium")
    inputs.add_argument("--spaceranger", metavar="DIR", help="counts and coordinates from a Space Ranger outs/ folder (with --reference)")
    inputs.add_argument("--bin-size", type=int, metavar="UM", help="Visium HD: the bin size in µm, with --spaceranger")
    inputs.add_argument("--xenium", metavar="DIR", help="counts and coordinates from a Xenium outs/ folder (with --reference)")
    inputs.add_argument("--coord-columns", metavar="A,B", help="the two coordinate columns when C.csv has more")
    model = p.add_argument_group("model")
    model.add_argument("--mode", choices=("proportions", "components"),
                       help="default: proportions with --reference (unless --components is given), components with --scores")
    model.add_argument("--components", type=int, metavar="D", help="components mode: number of mixture components")
    model.add_argument("--lambda", dest="lambda_smooth", default=None, metavar="L",
                       help="spatial weight λ, or 'auto' (default: auto in proportions mode, 10 in components mode)")
    model.add_argument("--lambdas", metavar="L1,L2,...", help="proportions mode: the λ path searched by 'auto' (0 is always added)")
    model.add_argument("--folds", type=int, default=3, help="proportions mode: gene folds for choosing λ (default 3)")
    model.add_argument("--family", choices=("auto", "poisson", "nb"), default="auto",
                       help="proportions mode: count likelihood; auto (default): NB when the extra-Poisson variance exceeds the Poisson variance")
    model.add_argument("--theta", type=float, help="proportions mode: NB dispersion (default: estimated)")
    model.add_argument("--no-platform-effects", action="store_true", help="proportions mode: do not estimate per-gene platform effects")
    model.add_argument("--graph", choices=("delaunay", "mst", "mst_combined"), default="delaunay",
                       help="spot graph (default delaunay); mst_combined (proportions mode): MST on composition + α·distance")
    model.add_argument("--mst-alpha", type=float, default=1.0, help="α of mst_combined (default 1)")
    model.add_argument("--weight-rule", choices=("smoothed", "lp"), default="smoothed",
                       help="proportions mode: edge weights ∝ 1/(jump of neighbourhood-smoothed proportions) (default), "
                            "or the LP w-step (the components mode always uses the LP)")
    model.add_argument("--weight-constraint", choices=("at_least", "equal"), default="at_least",
                       help="LP w-step: each spot keeps ≥ min(1, deg·w_max) weight (default, feasible on every graph) or exactly 1")
    model.add_argument("--max-edge-length", type=float, help="drop longer Delaunay edges, in coordinate units")
    model.add_argument("--w-min", type=float, default=0.05, help="LP w-step: lower bound on edge weights (default 0.05)")
    model.add_argument("--w-max", type=float, default=1.0, help="LP w-step: upper bound on edge weights (default 1)")
    model.add_argument("--fixed-weights", action="store_true", help="keep edge weights at 2/(deg_i + deg_j), none learned")
    model.add_argument("--eps", type=float, default=1e-3, help="floor of the simplex for X rows and B columns (default 1e-3)")
    model.add_argument("--penalty", choices=("tv", "soft_l1"), default="tv", help="exact TV (default) or soft-L1 √(u²+δ)")
    model.add_argument("--delta", type=float, default=1e-6, help="δ of the soft-L1 penalty (default 1e-6)")
    solver = p.add_argument_group("solver")
    solver.add_argument("--tol", type=float, default=1e-4, help="stopping tolerance (default 1e-4)")
    solver.add_argument("--max-iter", type=int, help="components: outer iterations (default 100); proportions: iterations per solve (default 3000)")
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


def _read_reference(args) -> pd.DataFrame:
    if str(args.reference).endswith(".h5ad"):
        from s3r.deconv.counts import reference_from_h5ad

        return reference_from_h5ad(args.reference, args.cell_type_key)
    return _read_table(args.reference, "reference", "cell type", "gene")


def _folder_counts(adata, reference: pd.DataFrame, source: str) -> pd.DataFrame:
    """Raw counts of an instrument folder on the reference's genes only (densifying all genes would not fit)."""
    genes = set(map(str, reference.index)) | set(map(str, reference.columns))
    keep = [g for g in map(str, adata.var_names) if g in genes]
    if not keep:
        raise S3RInputError(f"{source}: no gene of the matrix is in the reference {len(genes)} names; check the reference's gene names")
    sub = adata[:, keep].X
    dense = sub.toarray() if hasattr(sub, "toarray") else np.asarray(sub)
    return pd.DataFrame(dense.astype(np.float64), index=pd.Index(map(str, adata.obs_names)), columns=keep)


def _counts_and_reference(args, coords_ids: set) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = _read_reference(args)
    if getattr(args, "_folder", None) is not None:
        counts = _folder_counts(args._folder, reference, args.counts)
    else:
        counts = _oriented(_read_table(args.counts, "counts", "spot", "gene"), coords_ids, args.counts, "spots", "genes")
    genes = set(map(str, counts.columns))
    if len(genes & set(map(str, reference.index))) > len(genes & set(map(str, reference.columns))):
        reference = reference.T  # written genes × cell types
    return counts, reference


def _scores_from_args(args, coords_ids: set) -> tuple[pd.DataFrame, dict]:
    from s3r.deconv.scores import poisson_scores

    if args.scores:
        scores = _read_table(args.scores, "scores", "spot", "cell type")
        return scores, {"scores": args.scores}
    counts, reference = _counts_and_reference(args, coords_ids)
    scores = poisson_scores(
        counts, reference, temperature=args.temperature, source_counts=args.counts, source_reference=args.reference
    )
    return scores, {"counts": args.counts, "reference": args.reference, "temperature": args.temperature}


def _mode(args) -> str:
    if args.scores and (args.counts or args.reference):
        raise S3RInputError("give either --scores or --counts with --reference, not both")
    if not args.scores and not (args.counts and args.reference):
        raise S3RInputError("missing input: pass --counts COUNTS.csv with --reference REF, or --scores S.csv")
    mode = args.mode or ("components" if args.scores or args.components is not None else "proportions")
    if mode == "proportions" and args.scores:
        raise S3RInputError("--mode proportions fits counts: pass --counts and --reference instead of --scores (or --mode components)")
    if mode == "components" and args.components is None:
        raise S3RInputError("--mode components needs the number of mixture components: pass --components D")
    return mode


def _lambda(args, mode: str):
    value = args.lambda_smooth
    if value is None:
        return "auto" if mode == "proportions" else 10.0
    if str(value).lower() == "auto":
        if mode == "components":
            raise S3RInputError("--lambda auto is for the proportions mode; give a number (e.g. --lambda 10) with --components")
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise S3RInputError(f"--lambda must be a number ≥ 0 or 'auto', not {value!r}") from None


def _lambdas(text: str | None):
    from s3r.deconv.proportions import DEFAULT_LAMBDAS

    if not text:
        return DEFAULT_LAMBDAS
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise S3RInputError(f"--lambdas must be numbers separated by commas (e.g. 0,0.05,0.2), not {text!r}") from None


def _versions() -> dict:
    import torch

    return {"s3r": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _folder_input(args) -> pd.DataFrame | None:
    """--spaceranger/--xenium: the folder's AnnData stands in for --counts, its .obsm['spatial'] for --coords."""
    given = [k for k in ("spaceranger", "xenium") if getattr(args, k, None)]
    if getattr(args, "bin_size", None) is not None and not getattr(args, "spaceranger", None):
        raise S3RInputError("--bin-size selects Visium HD bins and needs --spaceranger")
    if not given:
        if not args.coords:
            raise S3RInputError("missing --coords C.csv (or give --spaceranger DIR / --xenium DIR, which carry coordinates)")
        return None
    if len(given) > 1 or args.counts or args.coords or args.scores:
        raise S3RInputError(f"--{given[0]} replaces --counts and --coords; give it with --reference only")
    from s3r.readers import input_source, read_spatial

    kind = given[0]
    args._folder = read_spatial(kind, getattr(args, kind), bin_size=args.bin_size, images=False)
    args.counts = args.coords = input_source(args._folder, getattr(args, kind))
    xy = np.asarray(args._folder.obsm["spatial"], dtype=np.float64)
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}, index=pd.Index(map(str, args._folder.obs_names)))


def run(args) -> int:
    folder_coords = _folder_input(args)
    mode = _mode(args)
    lam = _lambda(args, mode)
    coords_table = folder_coords if folder_coords is not None else _coordinates(args.coords, args.coord_columns)
    if mode == "proportions":
        return _run_proportions(args, lam, coords_table)
    return _run_components(args, lam, coords_table)


def _run_proportions(args, lam, coords_table) -> int:
    from s3r.deconv.outputs import write_proportions_tables
    from s3r.deconv.proportions import CellTypeProportions

    counts, reference = _counts_and_reference(args, set(coords_table.index))
    spot_ids = [str(s) for s in counts.index]
    coords = _align(coords_table, args.coords, spot_ids, args.counts)
    model = CellTypeProportions(
        lambda_smooth=lam,
        lambdas=_lambdas(args.lambdas),
        n_folds=args.folds,
        family=args.family,
        theta=args.theta,
        estimate_platform_effects=not args.no_platform_effects,
        weight_rule=args.weight_rule,
        mst_alpha=args.mst_alpha,
        max_iter=args.max_iter or 3000,
        **_shared_options(args),
    )
    model.fit(counts, reference, coords.to_numpy(dtype=np.float64), source_counts=args.counts, source_reference=args.reference)

    out = _output_folder(args)
    types = list(model.cell_types_)
    choice = write_proportions_tables(
        model, proportions=out / "proportions.csv", transcript_fractions=out / "transcript_fractions.csv",
        platform_effects=out / "platform_effects.csv", lambda_cv=out / "lambda_cv.csv",
        lambda_choice=out / "lambda_choice.csv", edge_weights=out / "edge_weights.csv",
    )
    summary = {
        "cell_types": types,
        "cell_sizes": dict(zip(types, map(float, model.cell_sizes_))),
        "lambda_evidence": choice.to_dict(orient="records"),
        "inputs": {"counts": args.counts, "reference": args.reference, "coords": args.coords},
        "parameters": _estimator_parameters(model),
    }
    _finish(args, out, model.report_, summary,
            f"proportions at λ = {model.lambda_:g} ({model.report_['lambda_choice']})",
            "proportions.csv, lambda_choice.csv, deconvolve.json and more")
    return 0


def _run_components(args, lam, coords_table) -> int:
    from s3r.deconv import Deconvolution
    from s3r.deconv.outputs import write_components_tables
    from s3r.io import write_csv

    scores, inputs = _scores_from_args(args, set(coords_table.index))
    spots_path = args.scores or args.counts
    spot_ids = [str(s) for s in scores.index]
    coords = _align(coords_table, args.coords, spot_ids, spots_path)
    if args.graph == "mst_combined":
        raise S3RInputError("--graph mst_combined needs proportions (the proportions mode); use delaunay or mst with --components")
    max_iter = args.max_iter or 100
    model = Deconvolution(
        args.components,
        lambda_smooth=lam,
        eps=args.eps,
        penalty=args.penalty,
        delta=args.delta,
        max_iter=max_iter,
        **_shared_options(args),
    )
    model.fit(scores, coords)

    out = _output_folder(args)
    write_components_tables(
        model, spot_ids, proportions=out / "proportions.csv", mixture=out / "mixture.csv",
        dictionary=out / "dictionary.csv", edge_weights=out / "edge_weights.csv",
    )
    if "counts" in inputs:
        write_csv(scores.rename_axis("spot"), out / "scores.csv")
    summary = {
        "mode": "components",
        "inputs": {**inputs, "coords": args.coords},
        "parameters": {**_estimator_parameters(model), "components": args.components, "lambda": lam},
    }
    _finish(args, out, model.report_, summary, f"components after {model.n_iter_} iterations",
            "mixture.csv, dictionary.csv, proportions.csv, edge_weights.csv, deconvolve.json")
    return 0


def _shared_options(args) -> dict:
    """The graph, edge-weight and solver options both estimators take under the same names."""
    return dict(
        graph=args.graph, max_edge_length=args.max_edge_length, learn_weights=not args.fixed_weights,
        w_min=args.w_min, w_max=args.w_max, weight_constraint=args.weight_constraint, tol=args.tol,
        device=args.device, dtype=args.dtype, seed=args.seed, verbose=not args.quiet,
    )


def _estimator_parameters(model) -> dict:
    return {key: value for key, value in model.__dict__.items() if not key.startswith("_") and not key.endswith("_")}


def _output_folder(args) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _finish(args, out: Path, model_report: dict, summary: dict, what: str, written: str) -> None:
    """deconvolve.json (the model's report, then this run's inputs, parameters and versions) and one line."""
    from s3r.artifacts import DECONV_SUMMARY
    from s3r.io import write_json

    write_json({**model_report, **summary, "versions": _versions()}, out / DECONV_SUMMARY)
    if not args.quiet:
        state = "converged" if model_report["converged"] else "stopped at --max-iter"
        print(f"s3r deconvolve: {what}, {state}, {model_report['seconds']:.1f} s; wrote {out}/{written}", file=sys.stderr)
