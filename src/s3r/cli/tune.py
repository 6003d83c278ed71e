"""``s3r tune``: cross-validated search for λ, α, β, in one process with the code the workflow distributes.

Writes DIR/best_params.json (for ``s3r fit --params``), DIR/trials.tsv, DIR/fold_scores.tsv, DIR/folds.tsv,
DIR/study.journal (open with ``optuna-dashboard``) and the per-round files under DIR/round_*/. With a count
family the CV loss is the mean deviance on held-out spots (the squared error for gaussian).
"""

from __future__ import annotations

import sys
from pathlib import Path

from s3r.cli.common import model_flags, add_input_arguments, add_model_arguments, load_input, progress_printer
from s3r.io import read_json_object
from s3r.tune.space import SELECTIONS


def add_parser(subparsers):
    p = subparsers.add_parser("tune", help="tune λ, α, β by spatial cross-validation (Optuna)", description=__doc__)
    add_input_arguments(p)
    add_model_arguments(p, title="model (as for s3r fit)", tuning=True)
    s = p.add_argument_group("search")
    s.add_argument("--trials", type=int, default=None, help="parameter sets in total (default 30)")
    s.add_argument("--rounds", type=int, default=None, help="ask → evaluate → tell rounds; the first is space filling (default 3)")
    s.add_argument("--folds", type=int, default=None, help="cross-validation folds (default 5)")
    s.add_argument("--fold-scheme", choices=("blocks", "random"), default=None, help="random spots (default) or spatial blocks")
    s.add_argument("--blocks-per-fold", type=int, default=None, help="contiguous blocks held out per fold (default 4)")
    s.add_argument("--predictor", choices=("graph", "neighbours"), default=None,
                   help="held-out prediction: the graph-smooth W of a zero-weight spot (default) or the mean W of its spatial training neighbours")
    s.add_argument("--selection", choices=tuple(x.replace("_", "-") for x in SELECTIONS), default=None,
                   help="best: lowest CV loss; one-se (the default): the simplest map (fewest constant pieces) within one SE of "
                        "the best; one-se-features: the same, sized by the number of features")
    s.add_argument("--seed", type=int, default=None, help="seed for folds and sampler (default 0)")
    s.add_argument("--max-spots", type=int, default=None, metavar="N",
                   help="a section with more spots is tuned on a window of N spots (the N nearest its centre) in the "
                        "section's own search box; the fit then runs on every spot (default 10000; 0: every spot)")
    s.add_argument("--all-rounds", action="store_true",
                   help="run every round even when a yardstick (intercept-only model, spatial trend) beats the best trial so far "
                        "by more than its SE (by default the search stops there: its verdict is 'no effect')")
    for name, flag in (("lambda_smooth", "--lambda-range"), ("alpha", "--alpha-range"), ("beta", "--beta-range")):
        s.add_argument(flag, dest=f"{name}_range", nargs=2, type=float, metavar=("LOW", "HIGH"),
                       help=f"log-uniform range for {name}, as fractions of its natural scale from the data (see --absolute-ranges)")
    s.add_argument("--absolute-ranges", action="store_true",
                   help="read --lambda-range/--alpha-range/--beta-range as absolute values, not fractions of the data's natural scales")
    s.add_argument("--config", metavar="tune.json", help="tuning settings as JSON (keys as in s3r.tune.DEFAULT_CONFIG); flags win")
    v = p.add_argument_group("solver during the search")
    v.add_argument("--tol", type=float, help="relative residual tolerance in CV (default 1e-2; s3r fit uses 1e-5)")
    v.add_argument("--max-iter", type=int, help="iteration limit per CV solve (default 500)")
    v.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    v.add_argument("--dtype", choices=("float32", "float64"), help="precision during the search (default float32)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--workers", type=int, help="folds solved at once (default: one per CPU core; 1 on a GPU)")
    p.add_argument("--keep-states", action="store_true", help="keep the per-fold warm-start solutions (round_*/fold_*.npz)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def build_config(args) -> dict:
    config: dict = {}
    if args.config:
        config = read_json_object(args.config, "tuning config not found", "of tuning settings")
    flags = {
        "n_trials": args.trials, "rounds": args.rounds, "folds": args.folds, "fold_scheme": args.fold_scheme,
        "blocks_per_fold": args.blocks_per_fold, "predictor": args.predictor, "seed": args.seed,
        "selection": None if args.selection is None else args.selection.replace("-", "_"),
        "stop_early": False if args.all_rounds else None,
    }
    config.update({key: value for key, value in flags.items() if value is not None})
    if args.max_spots is not None:
        config["max_spots"] = args.max_spots or None
    model = dict(config.get("model", {}))
    given = {"smooth": args.smooth, "graph": args.graph, "k": args.k, "radius": args.radius, "max_edge_length": args.max_edge_length,
             "family": args.family, "theta": args.theta}
    model.update({key: value for key, value in given.items() if value is not None})
    model.update(model_flags(args))
    config["model"] = model
    space = dict(config.get("space", {}))
    for name in ("lambda_smooth", "alpha", "beta"):
        rng = getattr(args, f"{name}_range")
        if rng is not None:
            space[name] = {"low": rng[0], "high": rng[1], "log": True, "relative": not args.absolute_ranges}
    if space:
        config["space"] = space
    solver = dict(config.get("solver", {}))
    solver.update({k: v for k, v in {"tol": args.tol, "max_iter": args.max_iter, "device": args.device, "dtype": args.dtype}.items() if v is not None})
    if solver:
        config["solver"] = solver
    return config


def run(args) -> int:
    from s3r.tune import resolve_config, run_search

    config = resolve_config(build_config(args))
    loaded = load_input(args, config["model"].get("family"))
    data, offset = loaded.data, loaded.offset
    say = progress_printer(args, "tune")
    best = run_search(data, config, args.out, workers=args.workers, keep_states=args.keep_states, progress=say, offset=offset)
    print(
        f"s3r tune: {data.target_name}: trial {best['trial']} of {best['n_trials']} ({best['selection']}): "
        f"lambda_smooth={best['lambda_smooth']:.4g} alpha={best['alpha']:.4g} beta={best['beta']:.4g}, "
        f"CV loss {best['cv_loss']:.6g}, {best['seconds']:.1f} s -> {Path(args.out) / 'best_params.json'}",
        file=sys.stderr,
    )
    print(f"s3r tune: {best['verdict']}", file=sys.stderr)
    for warning in best.get("warnings", []):
        print(f"s3r tune: warning: {warning}", file=sys.stderr)
    offset_flag = f" --offset {args.offset}" if args.offset else ""
    print(f"s3r tune: next: s3r fit <input> --params {Path(args.out) / 'best_params.json'}{fit_flags(config['model'])}{offset_flag} --out FIT_DIR", file=sys.stderr)
    return 0


def fit_flags(model: dict) -> str:
    """Flags s3r fit needs beyond --params: none for the model, which best_params.json carries ("model")."""
    return ""
