"""Sample sheet checks and small helpers for the Snakemake workflow.

The workflow must stop before any job runs when a sample sheet row is wrong, and say which row, which column
and what to do, because a mistake found by a cluster job hours later costs a queue wait and hides in a log.
Everything here is plain Python so it can be tested without Snakemake; ``workflow/rules/common.smk`` calls
it at parse time.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s3r.errors import S3RInputError

__all__ = [
    "SHEET_COLUMNS",
    "SampleSpec",
    "read_sample_sheet",
    "check_samples",
    "schema_error_message",
    "demo_outputs",
    "demo_paths",
    "simulate_demo",
    "model_settings",
    "choose_device",
    "summarise_fits",
    "load_scores",
    "run_deconvolution",
    "check_deconvolve_options",
    "graph_settings",
    "write_graph",
    "read_graph",
]

# Column -> what it holds; the order is the documented order (config/README.md).
SHEET_COLUMNS = {
    "sample": "unique sample name (letters, digits, '_', '-', '.')",
    "h5ad": "AnnData .h5ad input",
    "spaceranger": "a Space Ranger outs/ folder (Visium, Visium HD)",
    "bin_size": "Visium HD bin size in µm (with spaceranger)",
    "xenium": "a Xenium outs/ folder",
    "x_csv": "reference CSV: X, features x spots",
    "y_csv": "reference CSV: Y, spots x targets",
    "coords_csv": "reference CSV: coordinates, spots x (row, col)",
    "targets": "target names (comma-separated), 'all', or a file with one name per line",
    "features": "'all', gene names (comma-separated), a file, or 'obsm:<key>' (.h5ad)",
    "covariates": ".obs columns (comma-separated; .h5ad input), entered unpenalised",
    "layer": ".h5ad layer holding the expression (default .X)",
    "spatial_key": ".obsm key of the coordinates (default 'spatial')",
    "scores": "deconvolution input: an .obsm key (.h5ad) or a CSV of spots x cell types",
    "reference": "proportions-mode deconvolution: single cells (.h5ad with .obs cell types) or a CSV of cell types x genes",
    "cell_type_key": ".obs column of cell types in a reference .h5ad (default 'cell_type')",
    # per-sample overrides of config 'model' / 'graph'
    "smooth": "override model.smooth",
    "lambda_smooth": "override model.lambda_smooth",
    "alpha": "override model.alpha",
    "beta": "override model.beta",
    "graph": "override graph.method",
    "k": "override graph.k",
}
_NUMERIC_COLUMNS = {"lambda_smooth": float, "alpha": float, "beta": float, "k": int, "bin_size": int}
_MODEL_OVERRIDES = ("smooth", "lambda_smooth", "alpha", "beta")
_GRAPH_OVERRIDES = {"graph": "method", "k": "k"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class SampleSpec:
    """One checked sample sheet row, with targets resolved to names (they become wildcards)."""

    name: str
    line: int
    kind: str  # "h5ad" or "csv"
    inputs: dict[str, str]  # column -> path, for the rule's input
    targets: list[str]
    features: list[str] | str  # gene list, "all", or "obsm:<key>"
    covariates: list[str] | None = None  # .obs columns
    layer: str | None = None
    spatial_key: str = "spatial"
    scores: str | None = None
    reference: str | None = None
    cell_type_key: str = "cell_type"
    overrides: dict[str, Any] = field(default_factory=dict)


class _Row:
    """Error messages that point at one cell of the sample sheet."""

    def __init__(self, sheet: str, line: int, name: str | None):
        self.sheet, self.line, self.name = sheet, line, name

    def error(self, column: str | None, problem: str) -> S3RInputError:
        where = f"{self.sheet} line {self.line}"
        if self.name:
            where += f" (sample {self.name!r})"
        if column:
            where += f", column {column!r}"
        return S3RInputError(f"{where}: {problem}")


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _examples(items, k: int = 5) -> str:
    items = list(items)
    shown = ", ".join(repr(str(s)) for s in items[:k])
    return shown + (", ..." if len(items) > k else "")


# ---------------------------------------------------------------------------------------------------------
# Reading the sheet
# ---------------------------------------------------------------------------------------------------------


def read_sample_sheet(path: str | os.PathLike):
    """Read the tab-separated sheet as strings, keeping each row's line number for error messages.

    Returns ``(DataFrame, lines)`` with ``lines[i]`` the file line of data row ``i``. Override columns are
    converted to numbers here, so a typo such as ``0,1`` is reported on its cell instead of as a schema error.
    """
    import pandas as pd

    path = Path(path)
    sheet = str(path)
    if not path.is_file():
        raise S3RInputError(
            f"sample sheet {sheet!r} not found; set 'samples' in the config to the path of your "
            f"tab-separated sample sheet (see config/README.md)"
        )
    with open(path, newline="", encoding="utf-8-sig") as fh:
        numbered = [
            (i, row)
            for i, row in enumerate(csv.reader(fh, delimiter="\t"), start=1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
        ]
    if not numbered:
        raise S3RInputError(f"{sheet}: the sample sheet is empty; add a header line and one row per sample")
    header_line, header = numbered[0]
    header = [h.strip() for h in header]
    if len(header) == 1 and ("," in header[0] or " " in header[0]):
        raise S3RInputError(
            f"{sheet} line {header_line}: the header has a single column {header[0]!r}; "
            f"separate the columns with tabs, not commas or spaces"
        )
    for j, col in enumerate(header):
        if col not in SHEET_COLUMNS:
            raise S3RInputError(
                f"{sheet} line {header_line}, column {j + 1}: unknown column {col!r}{_suggest(col, SHEET_COLUMNS)}; "
                f"known columns are {', '.join(SHEET_COLUMNS)}"
            )
        if header.index(col) != j:
            raise S3RInputError(f"{sheet} line {header_line}: column {col!r} appears twice; keep one")
    for required in ("sample", "targets"):
        if required not in header:
            raise S3RInputError(
                f"{sheet} line {header_line}: the header lacks column {required!r}; add it "
                f"({SHEET_COLUMNS[required]})"
            )
    records, lines = [], []
    for line, row in numbered[1:]:
        cells = [c.strip() for c in row]
        # Trailing empty cells are often dropped by editors; extra non-empty cells are a real mistake.
        if len(cells) > len(header) and any(cells[len(header):]):
            raise S3RInputError(
                f"{sheet} line {line}: {len(cells)} tab-separated fields but the header has {len(header)}; "
                f"remove the extra fields or name them in the header"
            )
        cells = (cells + [""] * len(header))[: len(header)]
        records.append({col: (value if value != "" else None) for col, value in zip(header, cells)})
        lines.append(line)
    if not records:
        raise S3RInputError(f"{sheet}: the sample sheet has a header but no samples; add one row per sample")
    for record, line in zip(records, lines):
        row = _Row(sheet, line, record.get("sample"))
        for col, kind in _NUMERIC_COLUMNS.items():
            value = record.get(col)
            if value is None:
                continue
            try:
                number = float(value)
            except ValueError:
                raise row.error(col, f"{value!r} is not a number; write a number with a '.' decimal point") from None
            if kind is int:
                if not number.is_integer():
                    raise row.error(col, f"{value!r} is not a whole number; write an integer such as 7")
                number = int(number)
            record[col] = number
    frame = pd.DataFrame.from_records(records, columns=header)
    frame = frame.astype(object).where(frame.notna(), None)
    seen: dict[str, int] = {}
    for record, line in zip(records, lines):
        name = record.get("sample")
        if name is None:
            raise _Row(sheet, line, None).error("sample", "no sample name; give every row a unique name")
        if name in seen:
            raise _Row(sheet, line, name).error(
                "sample", f"duplicate sample name (also on line {seen[name]}); give every row a unique name"
            )
        seen[name] = line
    return frame, lines


def schema_error_message(error: BaseException, *, source: str, lines: list[int] | None = None, frame=None) -> str:
    """One line from a JSON-schema failure: where, the offending value, what the schema wants.

    ``error`` is the ``jsonschema.ValidationError`` (Snakemake's ``validate`` raises a WorkflowError whose
    ``__context__`` holds it). For a sample sheet, the row index is recovered from the WorkflowError text.
    """
    import jsonschema

    cause = error
    while cause is not None and not isinstance(cause, jsonschema.ValidationError):
        cause = cause.__context__ or cause.__cause__
    if cause is None:
        return f"{source}: {str(error).strip().splitlines()[0]}"
    path = [str(p) for p in cause.absolute_path]
    hint = cause.schema.get("description") if isinstance(cause.schema, dict) else None
    if cause.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)' was unexpected", cause.message)
        parent = cause.schema.get("properties", {}) if isinstance(cause.schema, dict) else {}
        key = extra[0] if extra else "?"
        where = ".".join(path + [key])
        return (
            f"{source}: unknown setting {where!r}{_suggest(key, parent)}; remove it or fix its spelling "
            f"(known: {', '.join(parent) or 'none'})"
        )
    problem = cause.message
    fix = f"expected: {hint}" if hint else "see workflow/schemas for the allowed values"
    if lines is not None and frame is not None:
        match = re.search(r"row (\d+)", str(error))
        i = int(match.group(1)) if match else 0
        row = _Row(source, lines[i], frame.iloc[i].get("sample"))
        return str(row.error(path[0] if path else None, f"{problem}; {fix}"))
    where = ".".join(path) if path else "(top level)"
    return f"{source}: setting {where!r}: {problem}; {fix}"


# ---------------------------------------------------------------------------------------------------------
# Checking rows
# ---------------------------------------------------------------------------------------------------------


def demo_outputs(demo: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    """Path -> (demo name, spec) for every file rule simulate_demo makes."""
    out = {}
    for name, spec in demo.items():
        for path in demo_paths(name).values():
            out[path] = (name, spec)
    return out


def demo_paths(name: str) -> dict[str, str]:
    """Both layouts are written for every demo input; the sample sheet picks one."""
    return {
        "x_csv": f"resources/demo/{name}/X.csv",
        "y_csv": f"resources/demo/{name}/Y.csv",
        "coords_csv": f"resources/demo/{name}/coords.csv",
        "h5ad": f"resources/demo/{name}.h5ad",
    }


def _norm(path: str) -> str:
    return os.path.normpath(path)


def _split_names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _looks_like_path(value: str) -> bool:
    return "/" in value or bool(re.search(r"\.(txt|tsv|csv|list)$", value))


def _names_or_file(row: _Row, column: str, value: str) -> list[str]:
    """A comma-separated list, or a file with one name per line (blank lines and '#' comments skipped)."""
    if Path(value).is_file():
        with open(value, encoding="utf-8") as fh:
            names = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
        if not names:
            raise row.error(column, f"file {value!r} lists no names; write one name per line")
        return names
    if _looks_like_path(value) and "," not in value:
        raise row.error(
            column, f"file {value!r} not found (relative to {os.getcwd()}); fix the path, or list names separated by commas"
        )
    return _split_names(value)


def _require_file(row: _Row, column: str, path: str, generated: dict) -> bool:
    """True when the file exists; False when a workflow rule will make it."""
    if _norm(path) in generated:
        return Path(path).is_file()
    p = Path(path)
    if not p.exists():
        raise row.error(
            column, f"file {path!r} not found (relative paths start at {os.getcwd()}); fix the path or create the file"
        )
    if not p.is_file():
        raise row.error(column, f"{path!r} is not a file; give the path of the file itself")
    return True


def _check_target_names(row: _Row, column: str, targets: list[str]) -> None:
    if not targets:
        raise row.error(column, "no targets given; name at least one target, or write 'all'")
    for t in targets:
        if "/" in t or t.startswith(".") or t != t.strip():
            raise row.error(column, f"target name {t!r} cannot be used in file names; rename it (no '/', no leading '.')")
    dup = sorted({t for t in targets if targets.count(t) > 1})
    if dup:
        raise row.error(column, f"target(s) listed twice: {_examples(dup)}; list each once")


def _demo_targets(row: _Row, value: str, simulated: list[str]) -> list[str]:
    targets = list(simulated) if value == "all" else _names_or_file(row, "targets", value)
    _check_target_names(row, "targets", targets)
    absent = [t for t in targets if t not in simulated]
    if absent:
        raise row.error(
            "targets", f"target {absent[0]!r} is not simulated for this demo input; the demo makes {_examples(simulated)}"
        )
    return targets


def _csv_header(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    return [h.strip() for h in header]


def _csv_first_column(path: str) -> list[str]:
    import pandas as pd

    return [str(v).strip() for v in pd.read_csv(path, usecols=[0], dtype=str).iloc[:, 0]]


def _check_csv_sample(
    row: _Row, record: dict, generated: dict, demo_targets: list[str] | None, deep: bool = True
) -> SampleSpec:
    from s3r.io import read_reference_csv

    cols = ("x_csv", "y_csv", "coords_csv")
    missing = [c for c in cols if not record.get(c)]
    if missing:
        raise row.error(
            missing[0], "empty; the reference CSV input needs all of x_csv, y_csv and coords_csv (or use column h5ad)"
        )
    paths = {c: record[c] for c in cols}
    exists = [_require_file(row, c, paths[c], generated) for c in cols]
    targets_value = record["targets"]
    features_value = record.get("features") or "all"
    if features_value.startswith("obsm:"):
        raise row.error("features", "'obsm:' keys need an .h5ad input; list genes, give a file, or write 'all'")
    if record.get("layer"):
        raise row.error("layer", "layers exist only in .h5ad inputs; leave it empty for reference CSV input")

    if all(exists):
        y_columns = _csv_header(paths["y_csv"])[1:]
        targets = y_columns if targets_value == "all" else _names_or_file(row, "targets", targets_value)
        _check_target_names(row, "targets", targets)
        absent = [t for t in targets if t not in y_columns]
        if absent:
            raise row.error(
                "targets",
                f"target {absent[0]!r} is not a column of {paths['y_csv']}{_suggest(absent[0], y_columns)}; "
                f"its columns are {_examples(y_columns, 10)}",
            )
        feature_names = None
        if deep:
            try:
                # The library reader checks numbers, ids and coordinates; only the row/column framing is added.
                read_reference_csv(paths["x_csv"], paths["y_csv"], paths["coords_csv"], target=targets[0])
            except S3RInputError as err:
                text = str(err)
                column = next((c for c in cols if text.startswith(str(Path(paths[c])))), "x_csv")
                raise row.error(column, text) from None
            feature_names = _csv_first_column(paths["x_csv"])
    else:  # made by simulate_demo
        targets = _demo_targets(row, targets_value, demo_targets)
        feature_names = None

    features = _resolve_features(row, features_value, feature_names, targets)
    if record.get("covariates"):
        raise row.error("covariates", "covariates are read from .obs, so they need an .h5ad input; leave it empty")
    scores = record.get("scores")
    if scores:
        _require_file(row, "scores", scores, generated)
    if record.get("reference"):
        raise row.error("reference", "proportions need spot counts, so an .h5ad sample (counts in .X or a layer); use column 'h5ad'")
    return SampleSpec(
        name=row.name, line=row.line, kind="csv", inputs=paths, targets=targets, features=features, scores=scores,
    )


def _resolve_features(row: _Row, value: str, available: list[str] | None, targets: list[str]):
    if value == "all" or value.startswith("obsm:"):
        return value
    names = _names_or_file(row, "features", value)
    dup = sorted({f for f in names if names.count(f) > 1})
    if dup:
        raise row.error("features", f"feature(s) listed twice: {_examples(dup)}; list each once")
    both = [t for t in targets if t in names]
    if both:
        raise row.error("features", f"target {both[0]!r} is also listed as a feature; remove it from the features")
    if available is not None:
        absent = [f for f in names if f not in available]
        if absent:
            raise row.error(
                "features",
                f"{len(absent)} feature(s) not in the input, e.g. {absent[0]!r}{_suggest(absent[0], available)}; "
                f"check the names",
            )
    return names


def _h5ad_summary(path: str) -> dict[str, Any]:
    """Names only (var, obs columns, obsm keys, layers): opened backed so X is not loaded at parse time."""
    import anndata

    adata = anndata.read_h5ad(path, backed="r")
    try:
        return {
            "var_names": [str(v) for v in adata.var_names],
            "obs_columns": [str(c) for c in adata.obs.columns],
            "obs_names_unique": adata.obs_names.is_unique,
            "obsm": list(adata.obsm.keys()),
            "layers": list(adata.layers.keys()),
            "x_dtype": getattr(adata.X, "dtype", None),
        }
    finally:
        adata.file.close()


def _check_h5ad_sample(row: _Row, record: dict, generated: dict, demo_targets: list[str] | None) -> SampleSpec:
    path = record["h5ad"]
    for c in ("x_csv", "y_csv", "coords_csv"):
        if record.get(c):
            raise row.error(c, "give either an .h5ad in column 'h5ad' or the reference CSV triplet, not both")
    if not path.endswith(".h5ad"):
        raise row.error("h5ad", f"{path!r} does not end in .h5ad; give an AnnData file (or use x_csv/y_csv/coords_csv)")
    targets_value = record["targets"]
    features_value = record.get("features") or "all"
    layer = record.get("layer")
    spatial_key = record.get("spatial_key") or "spatial"
    covariates = _split_names(record["covariates"]) if record.get("covariates") else None
    scores = record.get("scores")
    reference = record.get("reference")
    cell_type_key = record.get("cell_type_key") or "cell_type"
    if reference:
        if scores:
            raise row.error("reference", "give either 'scores' (components mode) or 'reference' (proportions), not both")
        if not reference.endswith((".h5ad", ".csv")):
            raise row.error("reference", f"{reference!r} is neither an .h5ad of single cells nor a .csv of cell types x genes")
        _require_file(row, "reference", reference, generated)

    if _require_file(row, "h5ad", path, generated):
        try:
            info = _h5ad_summary(path)
        except Exception as err:  # h5py/anndata raise many types for a damaged or foreign file
            raise row.error("h5ad", f"cannot read {path!r} as AnnData ({err}); rewrite it with AnnData.write_h5ad") from None
        var = info["var_names"]
        if targets_value == "all":
            if features_value == "all":
                raise row.error(
                    "targets", "'all' targets with 'all' features leaves nothing to regress on; list the features"
                )
            excluded = set() if features_value.startswith("obsm:") else set(_names_or_file(row, "features", features_value))
            targets = [v for v in var if v not in excluded]
        else:
            targets = _names_or_file(row, "targets", targets_value)
        _check_target_names(row, "targets", targets)
        absent = [t for t in targets if t not in var and t not in info["obs_columns"]]
        if absent:
            raise row.error(
                "targets", f"target {absent[0]!r} is not a gene (var_names) of {path}{_suggest(absent[0], var)}; check the name"
            )
        if not info["obs_names_unique"]:
            raise row.error("h5ad", f"{path} has duplicated spot ids (obs_names); run adata.obs_names_make_unique()")
        if len(set(var)) != len(var):
            raise row.error("h5ad", f"{path} has duplicated gene names; run adata.var_names_make_unique()")
        dtype = info["x_dtype"]
        if dtype is not None and np.dtype(dtype).kind not in "fiub":
            raise row.error("h5ad", f"{path}: .X holds non-numeric values ({dtype}); store numbers in .X")
        if features_value.startswith("obsm:"):
            key = features_value[5:]
            if key not in info["obsm"]:
                raise row.error(
                    "features", f".obsm key {key!r} not in {path}{_suggest(key, info['obsm'])}; keys: {_examples(info['obsm'])}"
                )
            features = features_value
        else:
            features = _resolve_features(row, features_value, var, targets)
        if layer and layer not in info["layers"]:
            raise row.error("layer", f"layer {layer!r} not in {path}{_suggest(layer, info['layers'])}; layers: {_examples(info['layers']) or 'none'}")
        if spatial_key not in info["obsm"]:
            raise row.error(
                "spatial_key" if record.get("spatial_key") else "h5ad",
                f"no coordinates .obsm[{spatial_key!r}] in {path}; store them there or set column spatial_key "
                f"(keys: {_examples(info['obsm']) or 'none'})",
            )
        for c in covariates or []:
            if c not in info["obs_columns"]:
                raise row.error("covariates", f".obs column {c!r} not in {path}{_suggest(c, info['obs_columns'])}; check the name")
        if scores and scores not in info["obsm"] and not Path(scores).is_file():
            raise row.error("scores", f"{scores!r} is neither an .obsm key of {path} nor a file; fix it")
    else:  # made by simulate_demo
        targets = _demo_targets(row, targets_value, demo_targets)
        features = _resolve_features(row, features_value, None, targets)
    return SampleSpec(
        name=row.name, line=row.line, kind="h5ad", inputs={"h5ad": path}, targets=targets, features=features,
        covariates=covariates, layer=layer, spatial_key=spatial_key, scores=scores,
        reference=reference, cell_type_key=cell_type_key,
    )


def check_samples(
    frame, lines: list[int], *, sheet: str, demo: dict | None = None, deep: bool = True
) -> dict[str, SampleSpec]:
    """Check every row against its input files and resolve targets; the first problem raises.

    ``deep=False`` skips reading whole tables (numbers, spot ids): for the copies of the workflow that
    Snakemake parses inside each job, after the main process has checked everything once.
    """
    generated = {_norm(p): v for p, v in demo_outputs(demo or {}).items()}
    specs: dict[str, SampleSpec] = {}
    for i, line in enumerate(lines):
        # Snakemake's validate() may have turned empty cells into NaN while filling defaults.
        record = {k: v for k, v in frame.iloc[i].to_dict().items() if v is not None and v == v}
        name = record["sample"]
        row = _Row(sheet, line, name)
        if not _SAFE_NAME.match(name):
            raise row.error("sample", "use only letters, digits, '_', '-' and '.' (it becomes a directory name)")
        input_paths = [record.get(c) for c in ("h5ad", "x_csv", "y_csv", "coords_csv") if record.get(c)]
        demo_targets = None
        for p in input_paths:
            if _norm(p) in generated:
                demo_targets = generated[_norm(p)][1]["targets"]
        if record.get("spaceranger") or record.get("xenium"):  # instrument folders: s3r.readers.sheet
            from s3r.readers.sheet import check_folder_sample

            spec = check_folder_sample(row, record, deep)
        elif record.get("h5ad"):
            spec = _check_h5ad_sample(row, record, generated, demo_targets)
        elif any(record.get(c) for c in ("x_csv", "y_csv", "coords_csv")):
            spec = _check_csv_sample(row, record, generated, demo_targets, deep)
        else:
            raise row.error(
                "h5ad", "no input; give an .h5ad path in column 'h5ad', a folder in 'spaceranger' or 'xenium', or the reference CSVs in x_csv, y_csv, coords_csv"
            )
        spec.overrides = {c: record[c] for c in (*_MODEL_OVERRIDES, *_GRAPH_OVERRIDES) if c in record}
        specs[name] = spec
    return specs


# ---------------------------------------------------------------------------------------------------------
# Settings and graph files
# ---------------------------------------------------------------------------------------------------------


def model_settings(config: dict, spec: SampleSpec) -> dict[str, Any]:
    """S3R keyword arguments for one sample: config 'model' and 'graph' with the row's overrides on top."""
    settings = dict(config["model"])
    settings.update({k: v for k, v in spec.overrides.items() if k in _MODEL_OVERRIDES})
    graph = graph_settings(config, spec)
    settings.update(
        graph=graph["method"], k=graph["k"], radius=graph["radius"], max_edge_length=graph["max_edge_length"]
    )
    return settings


_TUNE_MODEL_KEYS = ("smooth", "graph", "k", "radius", "max_edge_length", "compat", "scaling", "mask_zero_response", "fit_intercept",
                    "spatial_intercept", "family", "theta")


def tune_settings(config: dict, spec: SampleSpec) -> dict[str, Any]:
    """The s3r.tune configuration for one sample: config 'tune' around the sample's model and graph."""
    from s3r.tune import resolve_config

    tune = config["tune"]
    model = model_settings(config, spec)
    settings = {
        key: tune[key] for key in ("seed", "n_trials", "rounds", "folds", "fold_scheme", "selection") if key in tune
    }
    settings["space"] = dict(tune.get("space") or {})
    # a λ, α or β the sample sheet sets for this sample is held fixed in its search (not silently searched over)
    settings["space"].update({key: float(spec.overrides[key]) for key in ("lambda_smooth", "alpha", "beta") if spec.overrides.get(key) is not None
                              and spec.overrides[key] == spec.overrides[key]})
    settings["model"] = {key: model[key] for key in _TUNE_MODEL_KEYS if key in model}
    settings["solver"] = dict(tune.get("solver") or {})
    try:
        resolve_config(settings)
    except S3RInputError as err:
        raise S3RInputError(f"config tune (sample {spec.name}): {err}") from None
    return settings


def graph_settings(config: dict, spec: SampleSpec) -> dict[str, Any]:
    settings = dict(config["graph"])
    settings.update({_GRAPH_OVERRIDES[k]: v for k, v in spec.overrides.items() if k in _GRAPH_OVERRIDES})
    return settings


def write_graph(path: str | os.PathLike, graph, **extra) -> None:
    """Store a SpatialGraph so every fit of a sample reuses the identical edge list."""
    from s3r.io import write_npz

    write_npz(
        path, n_nodes=np.int64(graph.n_nodes), edges=graph.edges, weights=graph.weights,
        method=np.str_(graph.method), **extra,
    )


def read_graph(path: str | os.PathLike):
    from s3r.graph import SpatialGraph

    with np.load(path, allow_pickle=False) as f:
        return SpatialGraph(int(f["n_nodes"]), f["edges"], f["weights"], str(f["method"]))


# ---------------------------------------------------------------------------------------------------------
# Demo inputs
# ---------------------------------------------------------------------------------------------------------


def simulate_demo(spec: dict, *, x_csv, y_csv, coords_csv, h5ad) -> None:
    """Write one simulated demo input in both layouts (reference CSV triplet and .h5ad).

    All targets share the design X and the spots; the first is the simulator's own response, each further
    target is a fresh coefficient draw on the same regions (another seed), so two targets of a sample have
    different informative features, as two genes would. ``spec["design"]`` (default ``"reference"``) picks
    the simulator's design (``s3r.simulate``): ``"expression"`` gives log-expression-like features and
    targets whose signal has sd 1, so ``sigma`` is the noise sd relative to the signal.
    """
    import pandas as pd

    from s3r.io import atomic_path, write_csv
    from s3r.simulate import simulate, simulate_target

    seed, sigma = int(spec["seed"]), float(spec["sigma"])
    design = spec.get("design", "reference")
    base = simulate(
        spec["layout"], sigma=sigma, n_features=spec["n_features"], geometry=spec["geometry"],
        n_spots=spec["n_spots"], seed=seed, design=design,
    )
    X, n = base.X, base.n_spots
    responses, truths = {}, {}
    for k, name in enumerate(spec["targets"]):
        if k == 0:
            responses[name], truths[name] = base.y, base.W
            continue
        if design != "reference":
            responses[name], truths[name] = simulate_target(base, seed=seed + k)
            continue
        # the reference design's further targets, kept as they were so its demo data do not change
        other = simulate(spec["layout"], sigma=sigma, n_features=base.n_features, geometry=base.coords, seed=seed + k)
        noise = np.random.default_rng([seed, k]).standard_normal(n)
        responses[name] = np.einsum("ij,ij->i", X, other.W) + sigma * noise
        truths[name] = other.W

    spots, features = base.spot_ids, base.feature_names
    write_csv(pd.DataFrame(X.T, index=features, columns=spots), x_csv)
    write_csv(pd.DataFrame(responses, index=spots), y_csv)
    write_csv(pd.DataFrame({"row": base.coords[:, 0], "col": base.coords[:, 1]}, index=spots), coords_csv)

    import anndata

    targets = list(responses)
    adata = anndata.AnnData(
        X=np.column_stack([X] + [responses[t] for t in targets]),
        obs=pd.DataFrame({"region": pd.Categorical(base.regions)}, index=pd.Index(spots)),
        var=pd.DataFrame(
            {"role": ["feature"] * len(features) + ["target"] * len(targets)}, index=pd.Index(features + targets)
        ),
        obsm={"spatial": base.coords.copy(), **{f"true_W_{t}": truths[t] for t in targets}},
        uns={"s3r_demo": {k: v for k, v in spec.items() if k != "targets"} | {"targets": targets}},
    )
    with atomic_path(h5ad) as tmp:
        adata.write_h5ad(tmp)


# ---------------------------------------------------------------------------------------------------------
# Job helpers
# ---------------------------------------------------------------------------------------------------------


def choose_device(gpus_granted, log=None) -> str:
    """'cuda' only when the scheduler granted this job a GPU and CUDA is usable.

    A GPU present but not granted belongs to another job (local runs with ``--resources gpu=0`` scale the
    request to 0); a GPU granted but not usable (a CPU-only torch build, a fake GRES) falls back to the CPU
    with a warning rather than failing the job.
    """
    import sys

    import torch

    log = log or sys.stderr
    granted = int(gpus_granted or 0) > 0
    available = torch.cuda.is_available()
    if granted and available:
        return "cuda"
    if granted:
        print("warning: a GPU was requested but CUDA is not available to torch here; running on the CPU", file=log)
    return "cpu"


# ---------------------------------------------------------------------------------------------------------
# Report helpers (the reporting issue will grow these into s3r's report module)
# ---------------------------------------------------------------------------------------------------------


def summarise_fits(fit_jsons, graph_jsons=(), params_jsons=()):
    """One row per (sample, target); moved to :func:`s3r.report.summary.summarise_fits` (kept for callers)."""
    from s3r.report.summary import summarise_fits as summarise

    return summarise(fit_jsons, graph_jsons, params_jsons)


# ---------------------------------------------------------------------------------------------------------
# Deconvolution
# ---------------------------------------------------------------------------------------------------------


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


def check_deconvolve_options(options: dict, section: str = "options") -> None:
    """Unknown option names fail at start-up rather than in a GPU job ('options': components mode,
    'proportions': proportions mode)."""
    import inspect

    from s3r.deconv import CellTypeProportions, Deconvolution

    estimator = CellTypeProportions if section == "proportions" else Deconvolution
    known = [p for p in inspect.signature(estimator.__init__).parameters if p not in ("self", "device", "verbose")]
    for key in options:
        if key not in known:
            raise S3RInputError(
                f"config: unknown setting 'deconvolve.{section}.{key}'{_suggest(key, known)}; known: {', '.join(known)}"
            )


def run_proportions(spec: dict, inputs: dict, *, proportions, edge_weights, lambda_choice, summary, device: str) -> None:
    """Cell-type proportions of an .h5ad sample against its reference (config 'deconvolve.proportions'),
    written as ``s3r deconvolve`` writes them: proportions.csv, edge_weights.csv, lambda_choice.csv, JSON."""
    import anndata
    import pandas as pd

    from s3r.deconv import CellTypeProportions, reference_from_h5ad
    from s3r.io import write_csv, write_json

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
    index = pd.Index(model.spot_names_, name="spot")
    write_csv(pd.DataFrame(model.proportions_, index=index, columns=model.cell_types_), proportions)
    ids, edges = np.asarray(model.spot_names_, dtype=object), model.graph_.edges
    write_csv(pd.DataFrame({"spot_a": ids[edges[:, 0]], "spot_b": ids[edges[:, 1]], "weight": model.edge_weights_}),
              edge_weights, index=False)
    choice = model.summary_of_choice()
    write_csv(choice, lambda_choice, index=False)
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
    from s3r.io import write_csv, write_json

    scores, coords = load_scores(spec, inputs)
    options = dict(spec["settings"].get("options") or {})
    model = Deconvolution(**options, device=device, verbose=True)
    model.fit(scores, coords)
    spots = list(scores.index)
    index = pd.Index(spots, name="spot")
    write_csv(pd.DataFrame(model.proportions_, index=index, columns=model.cell_types_), proportions)
    write_csv(pd.DataFrame(model.mixture_, index=index, columns=model.component_names()), mixture)
    if dictionary is not None:
        cell_types = pd.Index(model.cell_types_, name="cell_type")
        write_csv(pd.DataFrame(model.dictionary_, index=cell_types, columns=model.component_names()), dictionary)
    if edge_weights is not None:
        ids, edges = np.asarray(spots, dtype=object), model.graph_.edges
        table = pd.DataFrame({"spot_a": ids[edges[:, 0]], "spot_b": ids[edges[:, 1]], "weight": model.edge_weights_})
        write_csv(table, edge_weights, index=False)
    report = {k: v for k, v in model.report_.items() if k not in ("steps", "objective_trace")}
    report |= {
        "cell_types": list(model.cell_types_),
        "dictionary": pd.DataFrame(model.dictionary_, index=model.cell_types_, columns=model.component_names()).to_dict(),
        "options": options,
    }
    write_json(report, summary)
