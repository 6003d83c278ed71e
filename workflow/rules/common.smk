# Helpers only (no rules): config and sample sheet checks at parse time, input functions, target lists.
# Everything that can be wrong with the inputs is caught here, before any job is scheduled.
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The one way every process imports the library: this checkout's src/ first, so the workflow and the library
# always match, whether or not s3r is installed (conda envs hold only the dependencies). sys.path serves this
# parse; PYTHONPATH is inherited by the scripts' interpreters, locally and in SLURM jobs (which parse again).
_SRC = str(Path(workflow.basedir).parent / "src")
if Path(_SRC).is_dir():
    if _SRC in sys.path:
        sys.path.remove(_SRC)
    sys.path.insert(0, _SRC)
    _paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != _SRC]
    os.environ.update(PYTHONPATH=os.pathsep.join([_SRC, *_paths]))

from s3r.errors import S3RInputError
from s3r.workflow.environment import set_job_environment

set_job_environment()  # the jobs' allocator settings (s3r.workflow.environment says why), inherited like PYTHONPATH
from s3r.workflow import samples as ws_samples, screens as ws_screens, settings as ws_settings, startup as ws_startup
from s3r.workflow import chunks as ws_chunks
from s3r.workflow.sheet import schema_error_message
from s3r.counts import prepare_kwargs as counts_policy


def _input_error(message):
    """One actionable line; the traceback would only point into this file."""
    return WorkflowError(f"s3r: {message}")


try:
    validate(config, schema="../schemas/config.schema.yaml")
except WorkflowError as err:
    raise _input_error(schema_error_message(err, source="config")) from None

try:
    SAMPLE_SHEET, _SHEET_LINES = ws_samples.read_sample_sheet(config["samples"])
except S3RInputError as err:
    raise _input_error(err) from None

try:
    validate(SAMPLE_SHEET, schema="../schemas/samples.schema.yaml")
except WorkflowError as err:
    raise _input_error(
        schema_error_message(
            err, source=config["samples"], lines=_SHEET_LINES, frame=SAMPLE_SHEET
        )
    ) from None

try:
    # Jobs parse the workflow again; the main process has already read every table once.
    SAMPLES = ws_samples.check_samples(
        SAMPLE_SHEET,
        _SHEET_LINES,
        sheet=config["samples"],
        demo=config["demo"],
        deep=workflow.is_main_process,
    )
except S3RInputError as err:
    raise _input_error(err) from None

_model = config["model"]
if config["preprocess"]["offset"] and _model["family"] == "gaussian":
    raise _input_error(
        "config preprocess.offset applies to the count families (poisson, negative_binomial, gamma); "
        "set model.family or remove preprocess.offset"
    )
if _model["theta"] is not None and _model["family"] != "negative_binomial":
    raise _input_error(
        f"config model.theta is the negative binomial dispersion; remove it or set model.family "
        f"to negative_binomial (it is {_model['family']!r})"
    )

if config["tune"]["enabled"]:
    try:
        for _spec in SAMPLES.values():
            ws_settings.tune_settings(config, _spec)
    except S3RInputError as err:
        raise _input_error(err) from None

try:
    # sheet x config x profile combinations no schema sees (s3r.workflow.startup)
    ws_startup.check_graphs(config, SAMPLES)
    ws_startup.check_deconvolve_inputs(config, SAMPLES, config["samples"])
    ws_startup.check_threads(
        config,
        {rule: getattr(v, "value", v) for rule, v in (workflow.resource_settings.overwrite_threads or {}).items()},
    )
except S3RInputError as err:
    raise _input_error(err) from None

if config["deconvolve"]["enabled"]:
    try:
        ws_settings.check_deconvolve_options(config["deconvolve"]["options"])
        ws_settings.check_deconvolve_options(config["deconvolve"]["proportions"], "proportions")
    except S3RInputError as err:
        raise _input_error(err) from None

# Perturb-seq screens: their own sheet (config perturbseq.samples), checked like the spatial one.
PERTURBSEQ = {}
if config["perturbseq"]["enabled"]:
    try:
        PERTURBSEQ = ws_screens.read_perturbseq_sheet(
            config["perturbseq"], deep=workflow.is_main_process
        )
    except S3RInputError as err:
        raise _input_error(err) from None


# Targets in chunks: one tune_fold / fit_final / fit_report job per chunk of targets of a sample.
CHUNKS = ws_chunks.plan_chunks(config, SAMPLES)


wildcard_constraints:
    sample="|".join(re.escape(s) for s in SAMPLES),
    screen="|".join(re.escape(s) for s in PERTURBSEQ) or "(?!)",
    psdemo="|".join(re.escape(d) for d in config["perturbseq"]["demo"]) or "(?!)",
    round=r"\d+",
    fold=r"\d+",
    demo="|".join(re.escape(d) for d in config["demo"]) or "(?!)",
    target="[^/]+",
    chunk=r"c\d+",


def demo_spec(wildcards):
    return config["demo"][wildcards.demo]


def preprocess_input(wildcards):
    """The sample's input, and the proportions of its deconvolution when they are its features."""
    spec = SAMPLES[wildcards.sample]
    if spec.deconvolved_features:
        return {**spec.inputs, "proportions": f"results/deconvolution/{wildcards.sample}/proportions.csv"}
    return spec.inputs


def preprocess_params(wildcards):
    spec = SAMPLES[wildcards.sample]
    # the counts policy shared with s3r fit/tune (s3r.counts): log-normalised counts for gaussian; raw targets with
    # a log library size offset for the count families; preprocess.normalize false turns it off
    policy = counts_policy(config["model"]["family"], config["preprocess"]["normalize"], config["preprocess"]["offset"])
    return {
        "kind": spec.kind,
        "targets": spec.targets,
        "features": spec.features,
        "covariates": spec.covariates,
        "layer": spec.layer,
        "spatial_key": spec.spatial_key,
        "settings": {**config["preprocess"], "normalize": policy["normalize"]},
        "raw_targets": policy["raw_targets"],
        "offset": policy["offset"],
    }


def graph_params(wildcards):
    return ws_settings.graph_settings(config, SAMPLES[wildcards.sample])


def model_params(wildcards):
    return ws_settings.model_settings(config, SAMPLES[wildcards.sample])


def tune_settings(wildcards):
    return ws_settings.tune_settings(config, SAMPLES[wildcards.sample])


def chunk_targets(wildcards):
    """The targets of this chunk of the sample, in sheet order."""
    return CHUNKS[wildcards.sample][wildcards.chunk]


def sample_chunks():
    """(sample, chunk) pairs: the unit of tuning, fitting and reporting jobs."""
    return [(s, c) for s, chunks in CHUNKS.items() for c in chunks]


def _tune_dir(wildcards):
    return f"results/tune/{wildcards.sample}/{wildcards.chunk}"


def tune_previous_results(wildcards):
    """Result files of the earlier rounds: suggest rebuilds each target's study from them."""
    return [f"{_tune_dir(wildcards)}/round_{r}/results.json" for r in range(int(wildcards.round))]


def tune_warm_states(wildcards):
    """This fold's solutions from earlier rounds: the fold job warm-starts from them."""
    return [f"{_tune_dir(wildcards)}/round_{r}/fold_{wildcards.fold}.npz" for r in range(int(wildcards.round))]


def tune_fold_scores(wildcards):
    return [f"{_tune_dir(wildcards)}/round_{wildcards.round}/fold_{k}.json" for k in range(config["tune"]["folds"])]


def tune_all_results(wildcards):
    return [f"{_tune_dir(wildcards)}/round_{r}/results.json" for r in range(config["tune"]["rounds"])]


def tune_state_keys(wildcards):
    """[round, fold, path] of every fold's solutions: select copies the chosen trial's into each target's directory."""
    return [
        [r, k, f"{_tune_dir(wildcards)}/round_{r}/fold_{k}.npz"]
        for r in range(config["tune"]["rounds"])
        for k in range(config["tune"]["folds"])
    ]


def tune_all_states(wildcards):
    return [path for _, _, path in tune_state_keys(wildcards)]


def _chunk_resources(rule, wildcards, attempt):
    targets = CHUNKS[wildcards.sample][wildcards.chunk]
    return ws_chunks.chunk_resources(rule, config, SAMPLES[wildcards.sample], len(targets), attempt)


def tuning_priority(wildcards):
    return ws_chunks.chunk_priority(list(CHUNKS[wildcards.sample]), wildcards.chunk)


def after_tuning_priority(wildcards):
    return ws_chunks.chunk_priority(list(CHUNKS[wildcards.sample]), wildcards.chunk, after_tuning=True)


def fit_final_threads(wildcards):
    return ws_startup.job_threads(config, ws_chunks.fit_threads(config, SAMPLES[wildcards.sample]))


def tune_fold_mem_mb(wildcards, attempt):
    return _chunk_resources("tune_fold", wildcards, attempt)["mem_mb"]


def tune_fold_runtime(wildcards, attempt):
    return _chunk_resources("tune_fold", wildcards, attempt)["runtime"]


def fit_final_mem_mb(wildcards, attempt):
    return _chunk_resources("fit_final", wildcards, attempt)["mem_mb"]


def fit_final_runtime(wildcards, attempt):
    return _chunk_resources("fit_final", wildcards, attempt)["runtime"]


def deconvolve_enabled():
    return config["deconvolve"]["enabled"]


def deconvolve_samples():
    return [name for name, spec in SAMPLES.items() if spec.scores] if deconvolve_enabled() else []


def proportions_samples():
    return [name for name, spec in SAMPLES.items() if spec.reference] if deconvolve_enabled() else []


def proportions_input(wildcards):
    spec = SAMPLES[wildcards.sample]
    return {"h5ad": spec.inputs["h5ad"], "reference": spec.reference}


def proportions_params(wildcards):
    spec = SAMPLES[wildcards.sample]
    return {
        "layer": spec.layer,
        "spatial_key": spec.spatial_key,
        "cell_type_key": spec.cell_type_key,
        "settings": config["deconvolve"],
    }


def samples_pattern(names):
    """A wildcard constraint matching exactly these samples (none: matches nothing)."""
    return "|".join(re.escape(s) for s in names) or "(?!)"


def deconvolve_input(wildcards):
    spec = SAMPLES[wildcards.sample]
    inputs = dict(spec.inputs)
    if spec.scores and Path(spec.scores).is_file():
        inputs["scores"] = spec.scores
    return inputs


def deconvolve_params(wildcards):
    spec = SAMPLES[wildcards.sample]
    return {
        "kind": spec.kind,
        "scores": spec.scores,
        "spatial_key": spec.spatial_key,
        "settings": config["deconvolve"],
    }


def perturbseq_spec(wildcards):
    return PERTURBSEQ[wildcards.screen]


def perturbseq_input(wildcards):
    spec = PERTURBSEQ[wildcards.screen]
    return {"h5ad": spec["h5ad"], **({"gmt": spec["gmt"]} if spec.get("gmt") else {})}


def perturbseq_demo_spec(wildcards):
    return config["perturbseq"]["demo"][wildcards.psdemo]


def perturbseq_outputs():
    out = []
    for screen in PERTURBSEQ:
        out += [
            f"results/perturbseq/{screen}/coefficients.tsv",
            f"results/perturbseq/{screen}/programme_scores.tsv",
            f"results/report/perturbseq/{screen}/coefficients_heatmap.png",
            f"results/report/perturbseq/{screen}/programme_scores_heatmap.png",
            f"results/report/perturbseq/{screen}/programme_dotplot.png",
            f"results/report/perturbseq/{screen}/alpha_performance.png",
            f"results/report/perturbseq/{screen}/enrichment.png",
        ]
    return out


def chunk_of(sample, target):
    return next(c for c, targets in CHUNKS[sample].items() if target in targets)


def fit_dirs(wildcards):
    """Every chunk's fit directory (the summary reads the per-target fit.json files inside)."""
    return [f"results/fits/{s}/{c}" for s, c in sample_chunks()]


def tune_dirs(wildcards):
    return [f"results/tune/{s}/{c}/targets" for s, c in sample_chunks()]


def fit_params_pairs():
    """[sample, target, fit.json, best_params.json] per fit: the summary pairs them by name, not position."""
    return [
        [s, t, f"{ws_chunks.fit_dir(s, c, t)}/fit.json", f"{ws_chunks.tune_dir(s, c, t)}/best_params.json"]
        for s, c in sample_chunks()
        for t in CHUNKS[s][c]
    ]


def sample_target_names(wildcards):
    return list(SAMPLES[wildcards.sample].targets)


def sample_fit_dirs(wildcards):
    return [f"results/fits/{wildcards.sample}/{c}" for c in CHUNKS[wildcards.sample]]


def sample_coefficient_paths(wildcards):
    """Every target's coefficients of one sample, in sample_target_names' order."""
    s = wildcards.sample
    return [f"{ws_chunks.fit_dir(s, chunk_of(s, t), t)}/coefficients.npz" for t in SAMPLES[s].targets]


def final_outputs():
    out = [f"results/fits/{s}/{c}" for s, c in sample_chunks()]
    out += [f"results/report/{s}/{c}" for s, c in sample_chunks()]
    out += [f"results/report/{s}/programmes.tsv" for s in SAMPLES]
    out += ["results/report/summary.tsv"]
    out += [f"results/anndata/{s}.h5ad" for s in SAMPLES]
    out += [f"results/deconvolution/{s}/proportions.csv" for s in deconvolve_samples()]
    out += [f"results/report/{s}/deconvolution/proportions.png" for s in deconvolve_samples()]
    out += [f"results/deconvolution/{s}/lambda_choice.csv" for s in proportions_samples()]
    out += [f"results/report/{s}/deconvolution/proportions.png" for s in proportions_samples()]
    out += perturbseq_outputs()
    return out


def fit_report_input(wildcards):
    """The chunk's fits (and the sample's .h5ad for a tissue image), and their tuning directories."""
    return {
        "fits": f"results/fits/{wildcards.sample}/{wildcards.chunk}",
        "tune": f"results/tune/{wildcards.sample}/{wildcards.chunk}/targets",
        **tissue_input(wildcards),  # the sample's .h5ad when it carries a tissue image (rules/io_common.smk)
    }
