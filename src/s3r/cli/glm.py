"""``s3r glm``: elastic-net GLMs for many responses at once (no spatial term), with a λ path and path CV.

Two designs from one AnnData file: features = genes / .obs columns / an .obsm matrix (``--features``), or
perturb-seq (``--perturbation COLUMN --control LEVEL``: one-hot perturbations, programmes of genes).
Covariates (``--covariates``, .obs columns) are unpenalised. Writes DIR/path.npz, DIR/glm.json and DIR/coefficients.csv
(features × responses at the selected λ) with DIR/scores.csv — or, for perturb-seq, the workflow's own tables
(tab-separated, one writer: ``s3r.perturb.write_perturbseq``): coefficients.tsv, covariate_coefficients.tsv,
programmes.tsv, modules.tsv, programme_scores.tsv, gene_scores.tsv. Every model and solver flag acts in both
designs (sparse counts stay sparse in perturb-seq mode); contradictory ones are refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from s3r.cli.common import progress_printer
from s3r.errors import S3RInputError
from s3r.glm.families import FAMILIES
from s3r.preprocess import LIBRARY_SIZE


def add_parser(subparsers):
    p = subparsers.add_parser("glm", help="elastic-net GLM for many responses (count families, perturb-seq)", description=__doc__)
    i = p.add_argument_group("input")
    i.add_argument("--h5ad", required=True, metavar="FILE", help="AnnData file (cells/spots × genes)")
    i.add_argument("--layer", help="count layer instead of .X")
    i.add_argument("--responses", metavar="G1,G2|hvg:N", default="hvg:2000", help="response genes, or hvg:N highly variable genes (default hvg:2000)")
    i.add_argument("--features", metavar="G1,G2|obs:C1,C2|obsm:KEY", help="penalised features (not with --perturbation)")
    i.add_argument("--perturbation", metavar="COLUMN", help="perturb-seq mode: .obs column of perturbation labels")
    i.add_argument("--control", help="control level of --perturbation (default control)")
    i.add_argument("--covariates", metavar="C1,C2", help="unpenalised .obs covariates (categorical → one-hot)")
    i.add_argument("--offset", metavar=f"COLUMN|{LIBRARY_SIZE}", help=f"offset on the link scale: an .obs column, or '{LIBRARY_SIZE}' = log total counts")
    m = p.add_argument_group("model")
    m.add_argument("--family", choices=FAMILIES, default="gaussian", help="data fit (default gaussian; log link for the others)")
    m.add_argument("--theta", type=float, help="negative binomial θ (default: estimated per response)")
    m.add_argument("--l1-ratio", type=float, default=0.5, help="lasso share of the elastic net (default 0.5)")
    m.add_argument("--alpha", type=float, help="a single penalty λ (default: a path)")
    m.add_argument("--n-alphas", type=int, help="path length from λ_max (default 20; not with --alpha)")
    m.add_argument("--eps", type=float, help="smallest λ as a fraction of λ_max (default 1e-3; not with --alpha)")
    m.add_argument("--cv", type=int, default=0, help="folds for path cross-validation by deviance (default 0: keep the last λ)")
    m.add_argument("--selection", choices=("min", "1se"), default="min", help="CV rule (default min)")
    m.add_argument("--standardize", action="store_true",
                   help="penalise coefficients of unit-variance features (glmnet style; off by default here, unlike the GLMNet class: "
                        "one-hot perturbations are on one scale already)")
    m.add_argument("--n-programmes", type=int, help="perturb-seq: number of gene programmes (default: cut at correlation distance 0.7)")
    s = p.add_argument_group("solver")
    s.add_argument("--tol", type=float, default=1e-6)
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    s.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    s.add_argument("--seed", type=int, default=0, help="seed for CV folds (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no summary on stderr")
    return p


PERTURBSEQ_TABLES = ("coefficients", "covariate_coefficients", "programmes", "modules", "programme_scores", "gene_scores")


def _split(text):
    return [t for t in (text or "").split(",") if t]


def _read(args):
    import anndata

    path = Path(args.h5ad)
    if not path.is_file():
        raise S3RInputError(f"{path}: h5ad file not found; check the path")
    try:
        adata = anndata.read_h5ad(path)
    except Exception as err:  # anndata/h5py raise many types for a foreign file
        raise S3RInputError(f"{path}: cannot read as an AnnData .h5ad file ({type(err).__name__}); check the file") from None
    if args.layer is not None and args.layer not in adata.layers:
        raise S3RInputError(f"{path}: layer {args.layer!r} not found; layers are {', '.join(adata.layers.keys()) or 'none'}")
    M = adata.X if args.layer is None else adata.layers[args.layer]
    return adata, M


def _check_obs(args, adata) -> None:
    """The .obs columns the flags name exist (and the control level among the labels), in messages naming the file."""
    from s3r.io.messages import _examples, _suggest

    obs = adata.obs
    named = [("--perturbation", args.perturbation)] if args.perturbation else []
    for flag, col in named + [("--covariates", c) for c in _split(args.covariates)]:
        if col not in obs.columns:
            raise S3RInputError(f"{args.h5ad}: {flag} column {col!r} is not in .obs{_suggest(col, list(obs.columns))}; "
                                f".obs has {_examples(list(obs.columns), 12)}")
    if args.perturbation:
        labels = sorted(set(obs[args.perturbation].astype(str)))
        if args.control not in labels:
            raise S3RInputError(f"{args.h5ad}: control level {args.control!r} is not a label of .obs[{args.perturbation!r}]"
                                f"{_suggest(args.control, labels)}; labels are {_examples(labels, 8)} (pass --control)")


def _dense(M, cols=None):
    sub = M if cols is None else M[:, cols]
    return np.asarray(sub.toarray() if hasattr(sub, "toarray") else sub, dtype=np.float64)


def _gene_index(adata, names, what):
    pos = {str(g): j for j, g in enumerate(adata.var_names)}
    missing = [g for g in names if g not in pos]
    if missing:
        raise S3RInputError(f"{what} gene(s) not in var_names: {', '.join(missing[:5])}")
    return np.array([pos[g] for g in names], dtype=np.int64)


def _responses(args, adata, M, counts_all):
    from s3r.perturb import highly_variable_genes

    spec = args.responses
    if spec.startswith("hvg:"):
        try:
            k = int(spec[4:])
        except ValueError:
            raise S3RInputError(f"--responses {spec}: expected hvg:N with N an integer") from None
        return highly_variable_genes(counts_all, k)
    return _gene_index(adata, _split(spec), "response")


def _check_flags(args) -> None:
    """Refuse contradictory flags (one line each) and fill the defaults that depend on the mode."""
    if args.selection != "min" and not args.cv:
        raise S3RInputError("--selection 1se needs --cv K (it picks among cross-validated penalties); add --cv or drop --selection")
    if args.alpha is not None and (args.cv or args.eps is not None or args.n_alphas is not None):
        raise S3RInputError("--alpha fixes the penalty; --cv, --eps and --n-alphas shape a penalty path: give one or the other")
    if args.theta is not None and args.family != "negative_binomial":
        raise S3RInputError(f"--theta is the negative binomial's dispersion; drop it or use --family negative_binomial (not {args.family})")
    if not args.perturbation and (args.control is not None or args.n_programmes is not None):
        raise S3RInputError("--control and --n-programmes belong to the perturb-seq mode; add --perturbation COLUMN or drop them")
    args.eps = 1e-3 if args.eps is None else args.eps
    args.n_alphas = 20 if args.n_alphas is None else args.n_alphas
    args.control = "control" if args.control is None else args.control
    if args.perturbation and args.features:
        raise S3RInputError("give --features or --perturbation, not both")
    if not args.perturbation and not args.features:
        raise S3RInputError("give --features (G1,G2 | obs:C1,C2 | obsm:KEY) or --perturbation COLUMN")
    if args.offset == "library":
        raise S3RInputError(f"--offset library is now spelled --offset {LIBRARY_SIZE} (as in the workflow config)")
    if args.perturbation and args.offset not in (None, LIBRARY_SIZE):
        raise S3RInputError(f"perturb-seq mode uses log library size as the offset for count families; drop --offset or use --offset {LIBRARY_SIZE}")
    if args.perturbation and args.offset and args.family == "gaussian":
        raise S3RInputError("perturb-seq mode fits gaussian to log-normalised expression, with no offset; drop --offset or use a count family")


def _perturbseq_mode(args, adata, M, counts_all, cov_cols, cv):
    """Perturb-seq design: (result, model, per-gene scores, response names)."""
    from s3r.perturb import fit_perturbseq

    cols = _responses(args, adata, M, counts_all)
    res = fit_perturbseq(
        counts_all, adata.obs, perturbation_key=args.perturbation, control=args.control, covariates=cov_cols,
        gene_names=[str(g) for g in adata.var_names], genes=[str(adata.var_names[j]) for j in cols], family=args.family,
        l1_ratio=args.l1_ratio, alpha=args.alpha, n_alphas=args.n_alphas, eps=args.eps, cv=cv, selection=args.selection,
        standardize=args.standardize, tol=args.tol, dtype=args.dtype, n_programmes=args.n_programmes,
        theta=args.theta, device=args.device, random_state=args.seed, progress=progress_printer(args, "glm"),
    )
    return res, res.model, res.scores, list(res.coef.columns)


def _features(args, adata, M, counts_all):
    """(X, feature names) from --features: .obs columns, an .obsm matrix or genes (log-normalised for count families)."""
    from s3r.perturb import covariate_matrix, log_normalise

    feat = args.features
    if feat.startswith("obs:"):
        return covariate_matrix(adata.obs, _split(feat[4:]))
    if feat.startswith("obsm:"):
        key = feat[5:]
        if key not in adata.obsm:
            raise S3RInputError(f"{args.h5ad}: .obsm[{key!r}] not found; keys are {', '.join(adata.obsm.keys()) or 'none'}")
        obj = adata.obsm[key]
        X = np.asarray(obj, dtype=np.float64)
        return X, ([str(c) for c in obj.columns] if hasattr(obj, "columns") else [f"{key}_{j + 1}" for j in range(X.shape[1])])
    fcols = _gene_index(adata, _split(feat), "feature")
    X = _dense(log_normalise(counts_all)[:, fcols]) if args.family != "gaussian" or args.layer is None else _dense(M, fcols)
    return X, [str(adata.var_names[j]) for j in fcols]


def _offset(args, adata, counts_all):
    if args.offset == LIBRARY_SIZE:
        lib = np.asarray(counts_all.sum(1)).ravel()
        if np.any(lib <= 0):
            raise S3RInputError(f"{int(np.sum(lib <= 0))} cell(s) have zero total counts; filter them or give --offset COLUMN")
        return np.log(lib)
    if args.offset:
        if args.offset not in adata.obs.columns:
            raise S3RInputError(f"{args.h5ad}: --offset {args.offset!r} is not an .obs column (or use --offset {LIBRARY_SIZE})")
        return adata.obs[args.offset].to_numpy(dtype=np.float64)
    return None


def _features_mode(args, adata, M, counts_all, cov_cols, cv, out):
    """Features design: writes DIR/coefficients.csv; (model, per-response scores, response names)."""
    from s3r.glm import GLMNet
    from s3r.io import write_csv
    from s3r.perturb import covariate_matrix

    cols = _responses(args, adata, M, counts_all)
    names = [str(adata.var_names[j]) for j in cols]
    Y = counts_all[:, cols]
    Y = Y.toarray() if sp.issparse(Y) else Y
    if args.family == "gaussian" and args.layer is None and np.all(Y == np.round(Y)) and Y.max(initial=0) > 50:
        print("s3r glm: note: gaussian family on what look like raw counts; consider --family poisson or a log-normalised layer", file=sys.stderr)
    X, fnames = _features(args, adata, M, counts_all)
    C, cnames = covariate_matrix(adata.obs, cov_cols)
    Xf = np.hstack([X, C])
    pf = np.r_[np.ones(X.shape[1]), np.zeros(C.shape[1])]
    offset = _offset(args, adata, counts_all)
    model = GLMNet(args.family, l1_ratio=args.l1_ratio, alpha=args.alpha, n_alphas=args.n_alphas, eps=args.eps, cv=cv,
                   selection=args.selection, penalty_factor=pf, standardize=args.standardize, theta=args.theta, tol=args.tol,
                   device=args.device, dtype=args.dtype, random_state=args.seed, progress=progress_printer(args, "glm"))
    model.fit(Xf, Y, offset=offset)
    table = pd.DataFrame(np.atleast_2d(model.coef_).T, index=fnames + cnames, columns=names)
    table.loc["(intercept)"] = np.atleast_1d(model.intercept_)
    write_csv(table, out / "coefficients.csv", index_label="feature")
    scores = pd.DataFrame({k: np.atleast_1d(v) for k, v in model.scores(Xf, Y, offset).items()}, index=names)
    scores["alpha"] = np.atleast_1d(model.alpha_)
    return model, scores, names


def _write_path(model, names, params, out) -> None:
    from s3r.io import write_json, write_npz

    arrays = {"alphas": model.alphas_, "coef_path": model.coef_path_, "intercept_path": model.intercept_path_,
              "deviance_path": model.deviance_path_, "deviance_explained_path": model.deviance_explained_path_,
              "alpha_index": model.alpha_index_, "responses": np.array(names)}
    if model.cv_deviance_ is not None:
        arrays.update(cv_deviance=model.cv_deviance_, cv_deviance_se=model.cv_deviance_se_)
    write_npz(out / "path.npz", **arrays)
    write_json({"params": params, "report": model.report_}, out / "glm.json")


def run(args) -> int:
    from s3r.io import write_csv
    from s3r.perturb import write_perturbseq

    _check_flags(args)
    adata, M = _read(args)
    _check_obs(args, adata)
    out = Path(args.out)
    counts_all = sp.csr_matrix(M, dtype=np.float64) if sp.issparse(M) else _dense(M)  # sparse stays sparse
    cov_cols = _split(args.covariates)
    cv = args.cv or None
    params = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    if args.perturbation:
        res, model, scores, names = _perturbseq_mode(args, adata, M, counts_all, cov_cols, cv)
    else:
        model, scores, names = _features_mode(args, adata, M, counts_all, cov_cols, cv, out)
    if model.theta_ is not None:
        scores["theta"] = np.atleast_1d(model.theta_)
    if model.family_ in ("gamma", "gaussian"):
        scores["dispersion"] = np.atleast_1d(model.dispersion_)
    if args.perturbation:
        write_perturbseq(res, **{k: out / f"{k}.tsv" for k in PERTURBSEQ_TABLES})
    else:
        write_csv(scores, out / "scores.csv", index_label="response")
    _write_path(model, names, params, out)
    r = model.report_
    if not args.quiet:
        cv_note = f", {r['cv_folds']}-fold CV" if r["cv_folds"] else ""
        print(
            f"s3r glm: {r['family']}: {r['n_responses']} responses × {r['n_features']} features, {r['n_alphas']} λ"
            f"{cv_note} in {r['seconds']:.2f} s on {r['device']}; "
            f"median deviance explained {np.median(scores['deviance_explained']):.3f}"
            f"{'' if r['converged'] else ' (NOT all converged)'} -> {out}",
            file=sys.stderr,
        )
        if not r["cv_folds"] and args.alpha is None:  # the path's last λ is a choice nobody made
            print("s3r glm: λ was not chosen: the coefficients are the path's least-penalised point (noisy where counts are "
                  "low); add --cv 5 to choose λ by cross-validated deviance, or --alpha to fix it", file=sys.stderr)
    return 0 if r["converged"] else 3
