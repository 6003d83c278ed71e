"""Input options shared by the subcommands that read a regression problem."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from s3r.errors import S3RInputError
from s3r.io import RegressionData, read_h5ad, read_reference_csv
from s3r.validation import SMOOTH_MODES


def progress_printer(args, command: str):
    """Progress lines on stderr, prefixed with the command, unless --quiet (None then: the library stays silent)."""
    return None if args.quiet else (lambda line: print(f"s3r {command}: {line}", file=sys.stderr, flush=True))


def add_input_arguments(parser) -> None:
    group = parser.add_argument_group("input (reference CSV triplet, or an AnnData file)")
    group.add_argument("--x", metavar="X.csv", help="features × spots matrix (reference layout)")
    group.add_argument("--y", metavar="Y.csv", help="spots × target column(s)")
    group.add_argument("--coords", metavar="C.csv", help="spots × (row, col) or (x, y) coordinates")
    group.add_argument("--target-column", metavar="NAME", help="column of Y.csv to use when it has several")
    group.add_argument("--h5ad", metavar="FILE", help="AnnData file with coordinates in .obsm['spatial']")
    group.add_argument("--target", metavar="GENE", help="response gene (with --h5ad)")
    group.add_argument("--features", metavar="G1,G2,...", help="feature genes, or obsm:KEY for an .obsm matrix (with --h5ad)")
    group.add_argument("--layer", help="expression layer instead of .X (with --h5ad)")
    group.add_argument("--spatial-key", default="spatial", help="obsm key of the coordinates (default: spatial)")
    group.add_argument("--covariates", metavar="C1,C2", help="unpenalised .obs covariates (with --h5ad)")
    group.add_argument("--spaceranger", metavar="DIR", help="a Space Ranger outs/ folder (Visium; Visium HD with --bin-size), in-tissue spots")
    group.add_argument("--bin-size", type=int, metavar="UM", help="Visium HD: the bin size in µm (2, 8, 16, ...) under outs/binned_outputs/")
    group.add_argument("--xenium", metavar="DIR", help="a Xenium outs/ folder (cells, centroids in µm; control probes dropped)")
    group.add_argument("--normalisation", choices=("auto", "off"), default="auto",
                       help="auto (default): raw counts are library-size normalised + log1p (gaussian) or kept raw with a log "
                       "library size offset (count families), features scaled to unit variance (not centred), as in the workflow; off: counts as stored, features still scaled (the workflow's preprocess.normalize: false)")
    group.add_argument("--target-sum", type=float, default=1e4, help="counts per spot after library-size normalisation (default 10000)")


def add_model_arguments(parser, *, title: str, tuning: bool = False):
    """The model options s3r fit and s3r tune share. With ``tuning`` the defaults are None, so a tuning
    config file can supply what the flags leave out, and the help says how the search uses each option."""
    fixed = lambda value: None  # noqa: E731  (None = not given: s3r fit takes it from --params' model, else the default)
    m = parser.add_argument_group(title)
    m.add_argument("--smooth", choices=SMOOTH_MODES, default=None, help="smoothness penalty (default tv)")
    m.add_argument("--graph", choices=("knn", "delaunay", "radius", "mst"), default=fixed("knn"), help="spot graph (default knn)")
    m.add_argument("--k", type=int, default=fixed(7), help="neighbours for the kNN graph (default 7)")
    m.add_argument("--radius", type=float, help="radius for --graph radius, in coordinate units")
    m.add_argument("--max-edge-length", type=float, help="drop longer edges (so holes are not bridged)")
    m.add_argument("--compat", action="store_true",
                   help="the reference implementation: its kNN operator (graph_l1) and, unless --scaling says otherwise, its parameterisation")
    m.add_argument("--scaling", choices=("standard", "reference"),
                   help="standard (default): scale-free λ, α, β (target standardised, features scaled, loss and penalties per spot); "
                   "reference: the reference implementation's objective on raw data (README, 'Parameterisation')")
    on_off = argparse.BooleanOptionalAction
    m.add_argument("--mask", action=on_off, default=None,
                   help="force W_i = 0 where y_i == 0, the reference's dropout mask (default: off; on with --scaling reference)")
    m.add_argument("--standardize", action=on_off, default=None,
                   help="divide features by their root mean square (default: on; off with --scaling reference)")
    m.add_argument("--intercept", action=on_off, default=None,
                   help="an unpenalised global intercept (default: on; off with --scaling reference)")
    m.add_argument("--spatial-intercept", action="store_true", default=None,
                   help="also a spatially varying intercept, penalised by the smoothness term only")
    m.add_argument("--family", choices=("gaussian", "poisson", "negative_binomial", "gamma"), default=fixed("gaussian"),
                   help="data fit: squared error (default) or a log-link count family"
                   + ("; the CV loss is then the held-out mean deviance" if tuning else " (mean deviance)"))
    m.add_argument("--theta", type=theta_value,
                   help="negative binomial θ: a number, or 'estimate' ("
                   + ("CV ranks trials at the intercept model's θ; s3r fit estimates it" if tuning
                      else "maximum likelihood, alternating with the fit") + "; default 1)")
    m.add_argument("--offset", metavar="COLUMN", help="count families: .obs column added to log μ, e.g. log library size (with --h5ad)")
    return m


def theta_value(text: str):
    """--theta: a positive number, or 'estimate' (negative binomial θ by maximum likelihood)."""
    import argparse

    if text == "estimate":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'estimate', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"theta must be > 0, got {text}")
    return value


def read_offset(args):
    """--offset COLUMN: an .obs column of the --h5ad input (e.g. log library size), or None."""
    if not getattr(args, "offset", None):
        return None
    if not args.h5ad:
        raise S3RInputError("--offset names an .obs column and needs --h5ad")
    import anndata

    return _offset_column(anndata.read_h5ad(args.h5ad, backed="r"), args, args.h5ad)


def read_input(args) -> RegressionData:
    csv = [args.x, args.y, args.coords]
    if args.h5ad:
        if any(csv):
            raise S3RInputError("give either --h5ad or the --x/--y/--coords triplet, not both")
        if not args.target or not args.features:
            raise S3RInputError("--h5ad needs --target GENE and --features G1,G2,... (or --features obsm:KEY)")
        features = args.features[len("obsm:") :] if args.features.startswith("obsm:") else [f for f in args.features.split(",") if f]
        covariates = [c for c in (args.covariates or "").split(",") if c]
        return read_h5ad(args.h5ad, target=args.target, features=features, layer=args.layer, spatial_key=args.spatial_key, covariates=covariates)
    if not all(csv):
        missing = [flag for flag, value in zip(("--x", "--y", "--coords"), csv) if not value]
        raise S3RInputError(f"missing {', '.join(missing)}: give the reference CSV triplet (or --h5ad with --target and --features)")
    if args.covariates:
        raise S3RInputError("--covariates is read from .obs columns and needs --h5ad")
    return read_reference_csv(args.x, args.y, args.coords, target=args.target_column)


def describe_input(args) -> dict:
    for kind in ("spaceranger", "xenium"):
        if getattr(args, kind, None):
            out = {kind: getattr(args, kind), "target": args.target, "features": args.features, "layer": args.layer}
            return {**out, "bin_size_um": args.bin_size} if kind == "spaceranger" else out
    if args.h5ad:
        return {"h5ad": args.h5ad, "target": args.target, "features": args.features, "layer": args.layer}
    return {"x": args.x, "y": args.y, "coords": args.coords}


@dataclass
class LoadedInput:
    """What a subcommand fits: the problem, its offset, what the counts policy did, and the input as AnnData
    (None for the CSV triplet) for --write-h5ad."""

    data: RegressionData
    offset: object = None
    normalisation: dict = field(default_factory=dict)
    adata: object = None


def input_kind(args) -> tuple[str, str | None]:
    """The one input given: ('csv', None) or (kind, path) for h5ad / spaceranger / xenium."""
    given = [(k, getattr(args, k, None)) for k in ("h5ad", "spaceranger", "xenium") if getattr(args, k, None)]
    if len(given) > 1:
        raise S3RInputError(f"give one input, not {' and '.join('--' + k for k, _ in given)}")
    if given and any([args.x, args.y, args.coords]):
        raise S3RInputError(f"give either --{given[0][0]} or the --x/--y/--coords triplet, not both")
    if getattr(args, "bin_size", None) is not None and not getattr(args, "spaceranger", None):
        raise S3RInputError("--bin-size selects Visium HD bins and needs --spaceranger")
    return given[0] if given else ("csv", None)


def load_input(args, family: str | None) -> LoadedInput:
    """Read the input and apply the counts policy (s3r.counts) exactly as the workflow's preprocess step does."""
    from s3r.counts import describe, prepare_kwargs
    from s3r.preprocess import holds_counts, prepare_h5ad, prepare_reference_csv

    kind, path = input_kind(args)
    policy = getattr(args, "normalisation", "auto")
    target_sum = getattr(args, "target_sum", 1e4)
    if kind == "csv":
        data = read_input(args)
        if getattr(args, "offset", None):
            raise S3RInputError("--offset names an .obs column and needs an AnnData input (--h5ad, --spaceranger or --xenium)")
        if holds_counts(data.X):  # 'off' too: as the workflow's 'normalize: false', features still scaled
            kwargs = prepare_kwargs(family, policy)
            prepared = prepare_reference_csv(args.x, args.y, args.coords, targets=[data.target_name], features=list(data.feature_names),
                                             target_sum=target_sum, standardize=True, **kwargs)
            return LoadedInput(prepared.regression_data(data.target_name), prepared.offset, describe(prepared.info))
        return LoadedInput(data, None, describe({"input_counts": holds_counts(data.X), "normalized": False, "policy": policy}))

    from s3r.readers import read_spatial

    if not args.target or not args.features:
        raise S3RInputError(f"--{kind} needs --target GENE and --features G1,G2,... (or --features obsm:KEY)")
    adata = read_spatial(kind, path, bin_size=getattr(args, "bin_size", None))
    obsm = args.features.startswith("obsm:")
    features = args.features if obsm else [f for f in args.features.split(",") if f]
    covariates = [c for c in (args.covariates or "").split(",") if c]
    if args.layer is not None and args.layer not in adata.layers:
        from s3r.readers import input_source

        raise S3RInputError(f"{input_source(adata, path)}: layer {args.layer!r} not found; layers are {', '.join(adata.layers.keys()) or 'none'}")
    matrix = adata.X if args.layer is None else adata.layers[args.layer]
    counts = matrix is not None and holds_counts(matrix)
    if counts:  # under 'off' as the workflow's 'normalize: false': counts kept, features scaled to unit variance
        kwargs = prepare_kwargs(family, policy, getattr(args, "offset", None))
        prepared = prepare_h5ad(adata, targets=[args.target], features=features, covariates=covariates, layer=args.layer,
                                spatial_key=args.spatial_key, target_sum=target_sum, standardize=True, **kwargs)
        return LoadedInput(prepared.regression_data(args.target), prepared.offset, describe(prepared.info), adata)
    from s3r.readers import input_source

    data = read_h5ad(adata, target=args.target, features=features[len("obsm:"):] if obsm else features, layer=args.layer,
                     spatial_key=args.spatial_key, covariates=covariates, source=input_source(adata, path))
    offset = _offset_column(adata, args, input_source(adata, path))
    return LoadedInput(data, offset, describe({"input_counts": counts, "normalized": False, "policy": policy, "offset": getattr(args, "offset", None)}), adata)


def _offset_column(adata, args, source):
    if not getattr(args, "offset", None):
        return None
    import numpy as np

    obs = adata.obs
    if args.offset not in obs.columns:
        raise S3RInputError(f"{source}: --offset column {args.offset!r} is not in .obs (columns: {', '.join(map(str, list(obs.columns)[:12]))})")
    try:
        values = obs[args.offset].to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise S3RInputError(f"{source}: --offset column {args.offset!r} is not numeric; give log library sizes") from None
    if not np.all(np.isfinite(values)):
        raise S3RInputError(f"{source}: --offset column {args.offset!r} has missing or infinite values; fill them (log of a positive size)")
    return values


class Progress:
    """A live line on a terminal; plain, rate-limited lines in logs."""

    def __init__(self, stream=None, every_seconds: float = 5.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every_seconds
        self.last = 0.0

    def __call__(self, entry) -> None:
        line = (
            f"iteration {entry['iteration']:>6}  objective {entry['objective'][0]:.8g}  "
            f"primal {entry['primal_residual'][0]:.1e}  dual {entry['dual_residual'][0]:.1e}"
        )
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
            return
        now = time.monotonic()
        if now - self.last >= self.every:
            self.stream.write(line + "\n")
            self.stream.flush()
            self.last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


MODEL_FLAGS = {"scaling": "scaling", "mask_zero_response": "mask", "standardize": "standardize", "fit_intercept": "intercept",
               "spatial_intercept": "spatial_intercept"}


def model_flags(args) -> dict:
    """The parameterisation settings given on the command line (None = not given)."""
    out = {key: getattr(args, attr) for key, attr in MODEL_FLAGS.items() if getattr(args, attr, None) is not None}
    if getattr(args, "compat", False):
        out["compat"] = True
    return out
