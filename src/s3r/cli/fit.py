"""``s3r fit``: one exact S3R fit from the reference CSV layout or an AnnData file."""

from __future__ import annotations

import sys
from pathlib import Path

from s3r.cli.common import model_flags, Progress, add_input_arguments, add_model_arguments, describe_input, load_input
from s3r.errors import S3RInputError
from s3r.results import read_params, write_fit

DEFAULTS = {"lambda_smooth": 0.01, "alpha": 0.01, "beta": 0.01}


def add_parser(subparsers):
    p = subparsers.add_parser("fit", help="fit S3R coefficients for one target", description=__doc__)
    add_input_arguments(p)
    m = add_model_arguments(p, title="model")
    m.add_argument("--lambda-smooth", type=float, help="smoothness weight λ (default 0.01)")
    m.add_argument("--alpha", type=float, help="lasso weight α (default 0.01)")
    m.add_argument("--beta", type=float, help="group-lasso weight β, multiplied by √n (default 0.01)")
    m.add_argument("--no-effect", choices=("intercept-only", "chosen-trial"), default="intercept-only",
                   help="with --params from a tuning whose verdict is 'no effect': fit the intercept-only model (default, as "
                        "the workflow does: every coefficient zero) or the chosen trial; explicit --alpha wins")
    m.add_argument("--params", metavar="best_params.json", help="λ, α, β from a tuning run (explicit flags win); the fit starts from that tuning's fold solutions of the chosen trial when they sit beside it, as the workflow's does")
    s = p.add_argument_group("solver")
    s.add_argument("--tol", type=float, default=1e-5, help="relative primal/dual residual tolerance (default 1e-5)")
    s.add_argument("--max-iter", type=int, default=20000)
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    s.add_argument("--dtype", choices=("mixed", "float64", "float32"), default="mixed",
                   help="mixed (default): float32 iterations, a float64 finish only where float32 misses --tol")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--write-h5ad", metavar="FILE", help="also write the input spots with the results as AnnData "
                   "(.obsm['s3r_<target>'] coefficients, .obs fitted values, .uns['s3r'] parameters and selected features)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def resolve_params(args) -> dict:
    params = dict(DEFAULTS)
    smooth = "tv"
    if args.params:
        from_file = read_params(args.params)
        smooth = from_file.pop("smooth", smooth)
        from_file.pop("model", None)
        params.update(from_file)
    for key in DEFAULTS:
        value = getattr(args, key)
        if value is not None:
            if value < 0:
                raise S3RInputError(f"--{key.replace('_', '-')} must be ≥ 0, got {value}")
            params[key] = value
    params["smooth"] = args.smooth or smooth
    return params


def tuning_record(path) -> dict:
    """The tuning behind --params (its trial, verdict, losses), empty without one."""
    if not path:
        return {}
    from s3r.artifacts import read_params_file

    return read_params_file(path)["tuning"] or {}


def tuning_verdict(tuning: dict) -> dict:
    """What the tuning concluded (effect found or not, in words), for fit.json and the report."""
    from s3r.artifacts import VERDICT_KEYS

    return {key: tuning[key] for key in VERDICT_KEYS if key in tuning}


def tuned_start(params_path, data, model):
    """The start the workflow's fit_final takes: the mean of the chosen trial's fold solutions kept beside a tuning's
    best_params.json (so both give the same numbers), when they are for these spots and features; else None."""
    if not params_path:
        return None
    from s3r.tune.files import chosen_start, start_shape

    return chosen_start(Path(params_path).parent, start_shape(model, *data.X.shape))


def run(args) -> int:
    from s3r.estimator import S3R
    from s3r.fit_targets import tuned_final_model

    params = resolve_params(args)
    progress = None if args.quiet else Progress()
    # a tuning run's model settings (parameterisation, intercept, ...) come with its λ, α, β; flags win
    tuned_model = read_params(args.params).get("model", {}) if args.params else {}
    settings = {key: tuned_model[key] for key in ("scaling", "mask_zero_response", "standardize", "fit_intercept", "spatial_intercept", "compat")
                if tuned_model.get(key) is not None}
    settings.update(model_flags(args))
    chosen = lambda key, flag, default: flag if flag is not None else tuned_model.get(key, default)  # noqa: E731
    model = S3R(
        params["smooth"], params["lambda_smooth"], params["alpha"], params["beta"],
        graph=chosen("graph", args.graph, "knn"), k=chosen("k", args.k, 7), radius=chosen("radius", args.radius, None),
        max_edge_length=chosen("max_edge_length", args.max_edge_length, None),
        tol=args.tol, max_iter=args.max_iter, device=args.device, dtype=args.dtype, callback=progress, **settings,
    )
    family = chosen("family", args.family, "gaussian") or "gaussian"
    loaded = load_input(args, family)
    data, offset = loaded.data, loaded.offset
    model.set_params(family=family, theta=chosen("theta", args.theta, None))
    tuning = tuning_record(args.params)
    verdict = tuning_verdict(tuning)
    # the workflow's rule for tuned parameters (an explicit --alpha is the user's own choice and is kept)
    model, final, replaced = tuned_final_model(model, tuning if args.alpha is None else {}, data.X, data.y, data.coords,
                                               no_effect=args.no_effect.replace("-", "_"), covariates=data.covariates, offset=offset)
    model.fit(data.X, data.y, data.coords, covariates=data.covariates, offset=offset,
              start=None if replaced else tuned_start(args.params, data, model))
    if progress:
        progress.close()
    extra = {**verdict, **({"final_model": final} if final else {})}
    out = write_fit(args.out, model, data, params=extra, inputs=describe_input(args), offset=offset,
                    normalisation=loaded.normalisation)
    if args.write_h5ad:
        from s3r.anndata_out import attach_fit, input_anndata, write_results_h5ad

        adata = input_anndata(loaded)
        attach_fit(adata, fit_dir=out, cv=verdict)
        write_results_h5ad(adata, args.write_h5ad)
    r = model.report_
    state = "converged" if r["converged"] else f"NOT converged (max {args.max_iter} iterations; raise --max-iter or --tol)"
    if r.get("theta") is not None:
        state += f", theta {r['theta']:.4g}" + (" (estimated)" if r.get("theta_estimated") else
                                                 " (the intercept model's: not estimable at this smoothness)" if r.get("theta_at_bound") else "")
    if verdict.get("effect_found") is False:
        print(f"s3r fit: {data.target_name}: {verdict['verdict']}", file=sys.stderr)
    print(
        f"s3r fit: {data.target_name}: {state} in {r['iterations']} iterations, {r['solve_seconds']:.2f} s on {r['device']}; "
        f"objective {r['objective']:.8g}; {r['selected_features']}/{r['n_features']} features selected -> {out}",
        file=sys.stderr,
    )
    return 0 if r["converged"] else 3
