"""What the workflow's data jobs call: one screen fit, its figures, and the two deconvolution modes.

Each function reads a rule's inputs, calls the library and writes the rule's outputs, so the scripts in
``scripts/`` stay a few lines of Snakemake plumbing and these steps are tested without Snakemake.
"""

from __future__ import annotations

import numpy as np

from s3r.errors import S3RInputError
from s3r.workflow.settings import perturbseq_fit_options

__all__ = ["OUTPUT_TABLES", "FIGURES", "run_screen", "plot_screen", "load_scores", "run_proportions", "run_deconvolution"]

OUTPUT_TABLES = ("coefficients", "covariate_coefficients", "programmes", "modules", "programme_scores", "gene_scores", "cell_scores",
                 "programme_tests", "enrichment", "alpha_performance", "summary")
FIGURES = ("coefficients_png", "scores_png", "shifts_png", "dotplot_png", "alpha_png", "enrichment_png")


def _say(log):
    """One progress line to the job's log, flushed (None: silent)."""
    return None if log is None else (lambda line: print(line, file=log, flush=True))


def run_screen(spec: dict, settings: dict, *, outputs: dict, device: str = "cpu", log=None) -> None:
    """Fit one screen and write its tables (keys of ``outputs``: any of :data:`OUTPUT_TABLES`; coefficients,
    programmes and programme_scores are required): W, M, programmes, modules, per-cell programme scores, the
    programme tests, enrichment, the penalty-selection table and a JSON summary."""
    from s3r.perturb import analyse_screen, fit_perturbseq, read_screen, write_perturbseq

    options = perturbseq_fit_options(settings)
    seed = int(settings.get("seed", 0))
    screen = read_screen(spec["h5ad"], perturbation_key=spec["perturbation_key"], covariates=spec["covariates"], layer=spec.get("layer"),
                         s_genes=spec.get("s_genes"), g2m_genes=spec.get("g2m_genes"), random_state=seed)
    try:
        result = fit_perturbseq(screen.counts, screen.obs, perturbation_key=spec["perturbation_key"], control=spec["control"],
                                covariates=list(spec["covariates"]), gene_names=screen.gene_names, genes=spec.get("genes"),
                                device=device, random_state=seed, progress=_say(log), **options)
        analysis = None
        if any(k in outputs for k in ("cell_scores", "programme_tests", "enrichment", "alpha_performance")):
            analysis = analyse_screen(result, screen, perturbation_key=spec["perturbation_key"], control=spec["control"],
                                      gmt=spec.get("gmt"), ctrl_size=int(settings.get("score_ctrl_size", 50)), random_state=seed,
                                      pool=str(settings.get("score_pool", "unmoved")))
    except S3RInputError as err:
        raise S3RInputError(f"{spec['h5ad']}: {err}") from None
    write_perturbseq(result, **outputs, analysis=analysis, extra={"h5ad": spec["h5ad"], "settings": options})
    if log is not None:
        print(f"{result.coef.shape[0]} perturbations × {result.coef.shape[1]} genes × {len(result.cells)} cells; "
              f"programmes {result.programmes.value_counts().sort_index().to_dict()}; modules {result.modules.value_counts().sort_index().to_dict()}; "
              f"{result.model.report_['seconds']:.2f} s on {result.model.report_['device']}", file=log)


def plot_screen(*, coefficients, programmes, programme_scores, coefficients_png, scores_png, modules=None, programme_tests=None,
                alpha_performance=None, enrichment=None, shifts_png=None, dotplot_png=None, alpha_png=None, enrichment_png=None,
                title: str = "") -> None:
    """The screen's figures from the tables :func:`run_screen` wrote: effect and programme-score heatmaps,
    and (given their tables) the programme-shift heatmap, the dot plot, penalty selection and enrichment."""
    import pandas as pd

    from s3r.perturb import plot_perturbseq
    from s3r.report import perturbseq as fig

    coef = pd.read_csv(coefficients, sep="\t", index_col=0)
    labels = pd.read_csv(programmes, sep="\t", index_col=0)["programme"]
    scores = pd.read_csv(programme_scores, sep="\t", index_col=0)
    if modules is None:
        plot_perturbseq(coef, labels, scores, coefficients_png=coefficients_png, scores_png=scores_png, title=title)
    else:
        mods = pd.read_csv(modules, sep="\t", index_col=0)["module"]
        fig.plot_effects_heatmap(coef, labels, mods, coefficients_png, title=f"{title} perturbation effects (programmes × modules)".strip())
        plot_perturbseq(coef, labels, scores, coefficients_png=None, scores_png=scores_png, title=title)
    if programme_tests is not None:
        tests = pd.read_csv(programme_tests, sep="\t")
        mods = None if modules is None else pd.read_csv(modules, sep="\t", index_col=0)["module"]
        if tests.empty:
            tests = pd.DataFrame({"perturbation": list(coef.index), "programme": "none", "mean_difference": 0.0, "p_adj": 1.0})
        if shifts_png is not None:
            fig.plot_programme_shifts(tests, shifts_png, title=f"{title} programme score minus control".strip())
        if dotplot_png is not None:
            fig.plot_dotplot(tests, dotplot_png, modules=mods, title=f"{title} programme scores (minus control)".strip())
    if alpha_performance is not None and alpha_png is not None:
        fig.plot_alpha_performance(pd.read_csv(alpha_performance, sep="\t"), alpha_png, title=f"{title} penalty selection".strip())
    if enrichment is not None and enrichment_png is not None:
        fig.plot_enrichment(pd.read_csv(enrichment, sep="\t"), enrichment_png, title=f"{title} programme enrichment".strip())


def load_scores(spec: dict, inputs: dict):
    """(scores DataFrame spots × cell types, coordinates aligned to its rows) for the deconvolve rule.

    ``spec["scores"]`` names an ``.obsm`` key of the sample's ``.h5ad`` or a CSV (spots × cell types) whose
    spot ids match the sample's coordinates.
    """
    import pandas as pd

    source = spec["scores"]
    if spec["kind"] == "h5ad":
        import anndata

        adata = anndata.read_h5ad(inputs["h5ad"])
        spots = pd.Index([str(s) for s in adata.obs_names])
        coords = pd.DataFrame(np.asarray(adata.obsm[spec["spatial_key"]])[:, :2], index=spots)
        if "scores" not in inputs:
            if source not in adata.obsm:
                raise S3RInputError(f"{inputs['h5ad']}: no .obsm[{source!r}] with deconvolution scores; fix column 'scores'")
            values = adata.obsm[source]
            if isinstance(values, pd.DataFrame):
                return values.set_axis(spots, axis=0), coords.to_numpy()
            values = np.asarray(values)
            return pd.DataFrame(values, index=spots, columns=[f"type_{k + 1}" for k in range(values.shape[1])]), coords.to_numpy()
    else:
        table = pd.read_csv(inputs["coords_csv"], index_col=0)
        table.index = [str(s) for s in table.index]
        lower = {str(c).lower(): c for c in table.columns}
        cols = [lower["row"], lower["col"]] if "row" in lower else [lower["x"], lower["y"]]
        coords = table[cols]
    scores = pd.read_csv(inputs["scores"], index_col=0)
    scores.index = [str(s) for s in scores.index]
    missing = [s for s in scores.index if s not in coords.index]
    if missing:
        raise S3RInputError(
            f"{inputs['scores']}: {len(missing)} spot(s) without coordinates, e.g. {missing[0]!r}; use the sample's spot ids"
        )
    return scores, coords.loc[scores.index].to_numpy(dtype=np.float64)




def run_proportions(spec: dict, inputs: dict, *, proportions, edge_weights, lambda_choice, summary, device: str) -> None:
    """Cell-type proportions of an .h5ad sample against its reference (config 'deconvolve.proportions'),
    written as ``s3r deconvolve`` writes them: proportions.csv, edge_weights.csv, lambda_choice.csv, JSON."""
    import anndata
    import pandas as pd

    from s3r.deconv import CellTypeProportions, reference_from_h5ad
    from s3r.deconv.outputs import write_proportions_tables
    from s3r.io import write_json

    adata = anndata.read_h5ad(inputs["h5ad"])
    matrix = adata.layers[spec["layer"]] if spec.get("layer") else adata.X
    spots = [str(s) for s in adata.obs_names]
    genes = [str(g) for g in adata.var_names]
    counts = pd.DataFrame(matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix), index=spots, columns=genes)
    coords = np.asarray(adata.obsm[spec["spatial_key"]], dtype=np.float64)[:, :2]
    source = inputs["reference"]
    if source.endswith(".h5ad"):
        reference = reference_from_h5ad(source, spec.get("cell_type_key") or "cell_type")
    else:
        reference = pd.read_csv(source, index_col=0)
    options = dict(spec["settings"].get("proportions") or {})
    model = CellTypeProportions(**options, device=device, verbose=True)
    model.fit(counts, reference, coords, source_counts=inputs["h5ad"], source_reference=source)
    choice = write_proportions_tables(model, proportions=proportions, edge_weights=edge_weights, lambda_choice=lambda_choice)
    report = dict(model.report_) | {
        "cell_types": list(model.cell_types_),
        "lambda_evidence": choice.to_dict(orient="records"),
        "platform_effects": dict(zip(model.genes_, map(float, model.platform_effects_))),
        "options": options,
    }
    write_json(report, summary)


def run_deconvolution(spec: dict, inputs: dict, *, proportions, mixture, summary, device: str, edge_weights=None,
                      dictionary=None) -> None:
    """Fit s3r.deconv.Deconvolution with config 'deconvolve.options' and write its outputs atomically.

    Files as ``s3r deconvolve`` writes them (the report reads either): proportions/mixture (spots × ...),
    dictionary (cell types × components), edge_weights (spot_a, spot_b, weight), and the JSON summary.
    """
    import pandas as pd

    from s3r.deconv import Deconvolution
    from s3r.deconv.outputs import write_components_tables
    from s3r.io import write_json

    scores, coords = load_scores(spec, inputs)
    options = dict(spec["settings"].get("options") or {})
    model = Deconvolution(**options, device=device, verbose=True)
    model.fit(scores, coords)
    write_components_tables(model, list(scores.index), proportions=proportions, mixture=mixture, dictionary=dictionary,
                            edge_weights=edge_weights)
    report = {k: v for k, v in model.report_.items() if k not in ("steps", "objective_trace")}
    report |= {
        "cell_types": list(model.cell_types_),
        "dictionary": pd.DataFrame(model.dictionary_, index=model.cell_types_, columns=model.component_names()).to_dict(),
        "options": options,
    }
    write_json(report, summary)
