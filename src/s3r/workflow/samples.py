"""The spatial sample sheet: read it, then check every row against its input files before any job runs.

A mistake found by a cluster job hours later costs a queue wait and hides in a log, so each row is checked at
parse time (``workflow/rules/common.smk``) and an error names the line, the column and the fix.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s3r.errors import S3RInputError
from s3r.workflow.paths import demo_outputs
from s3r.workflow.sheet import Row, check_name, examples, names_or_file, read_sheet, split_names, suggest

__all__ = ["SHEET_COLUMNS", "SampleSpec", "read_sample_sheet", "check_samples", "with_proportions"]

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
# features: obsm:proportions on a sample with 'scores' or 'reference' = the cell-type proportions of its own
# deconvolution in the same run ("where does composition drive the target?")
DECONVOLVED = "proportions"
_NUMERIC_COLUMNS = {"lambda_smooth": float, "alpha": float, "beta": float, "k": int, "bin_size": int}
_MODEL_OVERRIDES = ("smooth", "lambda_smooth", "alpha", "beta")
_GRAPH_OVERRIDES = {"graph": "method", "k": "k"}


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

    @property
    def deconvolved_features(self) -> bool:
        """True when the features are the proportions this run's deconvolution of the sample writes."""
        return self.features == f"obsm:{DECONVOLVED}" and bool(self.scores or self.reference)



def read_sample_sheet(path: str | os.PathLike):
    """Read the tab-separated sheet as strings, keeping each row's line number for error messages.

    Returns ``(DataFrame, lines)`` with ``lines[i]`` the file line of data row ``i``. Override columns are
    converted to numbers here, so a typo such as ``0,1`` is reported on its cell instead of as a schema error.
    """
    import pandas as pd

    sheet = str(path)
    records, lines = read_sheet(
        path, SHEET_COLUMNS, ("sample", "targets"), kind="sample",
        missing="set 'samples' in the config to the path of your tab-separated sample sheet (see config/README.md)",
    )
    for record, line in zip(records, lines):
        row = Row(sheet, line, record.get("sample"))
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
    frame = pd.DataFrame.from_records(records, columns=list(records[0]))
    frame = frame.astype(object).where(frame.notna(), None)
    return frame, lines


def _typed(column: str, value):
    kind = _NUMERIC_COLUMNS.get(column)
    return value if kind is None else kind(value)


def _norm(path: str) -> str:
    return os.path.normpath(path)



def _require_file(row: Row, column: str, path: str, generated: dict) -> bool:
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


def _check_target_names(row: Row, column: str, targets: list[str]) -> None:
    if not targets:
        raise row.error(column, "no targets given; name at least one target, or write 'all'")
    for t in targets:
        if "/" in t or t.startswith(".") or t != t.strip():
            raise row.error(column, f"target name {t!r} cannot be used in file names; rename it (no '/', no leading '.')")
    dup = sorted({t for t in targets if targets.count(t) > 1})
    if dup:
        raise row.error(column, f"target(s) listed twice: {examples(dup)}; list each once")


def _demo_targets(row: Row, value: str, simulated: list[str]) -> list[str]:
    targets = list(simulated) if value == "all" else names_or_file(row, "targets", value)
    _check_target_names(row, "targets", targets)
    absent = [t for t in targets if t not in simulated]
    if absent:
        raise row.error(
            "targets", f"target {absent[0]!r} is not simulated for this demo input; the demo makes {examples(simulated)}"
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
    row: Row, record: dict, generated: dict, demo_targets: list[str] | None, deep: bool = True
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
        targets = y_columns if targets_value == "all" else names_or_file(row, "targets", targets_value)
        _check_target_names(row, "targets", targets)
        absent = [t for t in targets if t not in y_columns]
        if absent:
            raise row.error(
                "targets",
                f"target {absent[0]!r} is not a column of {paths['y_csv']}{suggest(absent[0], y_columns)}; "
                f"its columns are {examples(y_columns, 10)}",
            )
        feature_names = None
        if deep:
            try:
                # The library reader checks numbers, ids and coordinates; only the row/column framing is added.
                data = read_reference_csv(paths["x_csv"], paths["y_csv"], paths["coords_csv"], target=targets[0])
            except S3RInputError as err:
                text = str(err)
                column = next((c for c in cols if text.startswith(str(Path(paths[c])))), "x_csv")
                raise row.error(column, text) from None
            _check_positions(row, "coords_csv", paths["coords_csv"], data.coords)
            feature_names = _csv_first_column(paths["x_csv"])
    else:  # made by the demo rule
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


def _resolve_features(row: Row, value: str, available: list[str] | None, targets: list[str]):
    if value == "all" or value.startswith("obsm:"):
        return value
    names = names_or_file(row, "features", value)
    dup = sorted({f for f in names if names.count(f) > 1})
    if dup:
        raise row.error("features", f"feature(s) listed twice: {examples(dup)}; list each once")
    both = [t for t in targets if t in names]
    if both:
        raise row.error("features", f"target {both[0]!r} is also listed as a feature; remove it from the features")
    if available is not None:
        absent = [f for f in names if f not in available]
        if absent:
            raise row.error(
                "features",
                f"{len(absent)} feature(s) not in the input, e.g. {absent[0]!r}{suggest(absent[0], available)}; "
                f"check the names",
            )
    return names


def _h5ad_summary(path: str, coords_key: str) -> dict[str, Any]:
    """Names (var, obs columns, obsm keys, layers) and the coordinates (n × 2, for the array-index check): opened
    backed so X is not loaded at parse time."""
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
            "coords": np.asarray(adata.obsm[coords_key]) if coords_key in adata.obsm else None,
        }
    finally:
        adata.file.close()


def _check_positions(row: Row, column: str, path: str, xy) -> None:
    """Coordinates that are positions, not Visium array indices (s3r.graph.lattice.visium_array_indices, imported for
    integer coordinates only: the graph package's scipy modules add seconds to every parse of the workflow)."""
    xy = np.asarray(xy)
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.issubdtype(xy.dtype, np.number) or not np.array_equal(xy, np.round(xy)):
        return  # positions in pixels or µm: not integers
    from s3r.graph.lattice import ARRAY_INDICES, visium_array_indices

    if visium_array_indices(xy):
        raise row.error(column, f"{path}: {ARRAY_INDICES}")


def _h5ad_targets(row: Row, path: str, info: dict, targets_value: str, features_value: str) -> list[str]:
    """The sample's targets in its .h5ad: listed (names or a file), or 'all' genes but the features; each a gene
    or an .obs column of the file."""
    var = info["var_names"]
    if targets_value == "all":
        if features_value == "all":
            raise row.error(
                "targets", "'all' targets with 'all' features leaves nothing to regress on; list the features"
            )
        excluded = set() if features_value.startswith("obsm:") else set(names_or_file(row, "features", features_value))
        targets = [v for v in var if v not in excluded]
    else:
        targets = names_or_file(row, "targets", targets_value)
    _check_target_names(row, "targets", targets)
    absent = [t for t in targets if t not in var and t not in info["obs_columns"]]
    if absent:
        raise row.error(
            "targets", f"target {absent[0]!r} is not a gene (var_names) of {path}{suggest(absent[0], var)}; check the name"
        )
    return targets


def _check_h5ad_sample(row: Row, record: dict, generated: dict, demo_targets: list[str] | None) -> SampleSpec:
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
    covariates = split_names(record["covariates"]) if record.get("covariates") else None
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
            info = _h5ad_summary(path, spatial_key)
        except Exception as err:  # h5py/anndata raise many types for a damaged or foreign file
            raise row.error("h5ad", f"cannot read {path!r} as AnnData ({err}); rewrite it with AnnData.write_h5ad") from None
        var = info["var_names"]
        targets = _h5ad_targets(row, path, info, targets_value, features_value)
        if not info["obs_names_unique"]:
            raise row.error("h5ad", f"{path} has duplicated spot ids (obs_names); run adata.obs_names_make_unique()")
        if len(set(var)) != len(var):
            raise row.error("h5ad", f"{path} has duplicated gene names; run adata.var_names_make_unique()")
        dtype = info["x_dtype"]
        if dtype is not None and np.dtype(dtype).kind not in "fiub":
            raise row.error("h5ad", f"{path}: .X holds non-numeric values ({dtype}); store numbers in .X")
        if features_value.startswith("obsm:"):
            key = features_value[5:]
            if key == DECONVOLVED and key not in info["obsm"] and (scores or reference):
                pass  # made by this run's deconvolution of the sample (rule deconvolve / deconvolve_proportions)
            elif key not in info["obsm"]:
                raise row.error(
                    "features", f".obsm key {key!r} not in {path}{suggest(key, info['obsm'])}; keys: {examples(info['obsm'])}"
                )
            features = features_value
        else:
            features = _resolve_features(row, features_value, var, targets)
        if layer and layer not in info["layers"]:
            raise row.error("layer", f"layer {layer!r} not in {path}{suggest(layer, info['layers'])}; layers: {examples(info['layers']) or 'none'}")
        if spatial_key not in info["obsm"]:
            raise row.error(
                "spatial_key" if record.get("spatial_key") else "h5ad",
                f"no coordinates .obsm[{spatial_key!r}] in {path}; store them there or set column spatial_key "
                f"(keys: {examples(info['obsm']) or 'none'})",
            )
        _check_positions(row, "spatial_key" if record.get("spatial_key") else "h5ad", f"{path} .obsm[{spatial_key!r}]",
                         info["coords"])
        for c in covariates or []:
            if c not in info["obs_columns"]:
                raise row.error("covariates", f".obs column {c!r} not in {path}{suggest(c, info['obs_columns'])}; check the name")
        if scores and scores not in info["obsm"] and not Path(scores).is_file():
            raise row.error("scores", f"{scores!r} is neither an .obsm key of {path} nor a file; fix it")
    else:  # made by the demo rule
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
        row = Row(sheet, line, name)
        check_name(row, name)
        input_paths = [record.get(c) for c in ("h5ad", "x_csv", "y_csv", "coords_csv") if record.get(c)]
        demo_targets = None
        for p in input_paths:
            if _norm(p) in generated:
                demo_targets = generated[_norm(p)][1]["targets"]
        if record.get("spaceranger") or record.get("xenium"):  # instrument folders: s3r.workflow.folders
            from s3r.workflow.folders import check_folder_sample

            spec = check_folder_sample(row, record, deep)
        elif record.get("h5ad"):
            spec = _check_h5ad_sample(row, record, generated, demo_targets)
        elif any(record.get(c) for c in ("x_csv", "y_csv", "coords_csv")):
            spec = _check_csv_sample(row, record, generated, demo_targets, deep)
        else:
            raise row.error(
                "h5ad", "no input; give an .h5ad path in column 'h5ad', a folder in 'spaceranger' or 'xenium', or the reference CSVs in x_csv, y_csv, coords_csv"
            )
        # typed again: a column with empty cells comes back from the schema validation as floats (k 7 -> 7.0)
        spec.overrides = {c: _typed(c, record[c]) for c in (*_MODEL_OVERRIDES, *_GRAPH_OVERRIDES) if c in record}
        specs[name] = spec
    return specs




def with_proportions(h5ad: str, proportions_csv: str):
    """The sample's AnnData with its deconvolution's proportions (spots × cell types) as ``.obsm['proportions']``."""
    import anndata
    import pandas as pd

    adata = anndata.read_h5ad(h5ad)
    table = pd.read_csv(proportions_csv, index_col=0)
    table.index = [str(s) for s in table.index]
    spots = [str(s) for s in adata.obs_names]
    missing = [s for s in spots if s not in set(table.index)]
    if missing:
        raise S3RInputError(f"{proportions_csv}: {len(missing)} spot(s) of {h5ad} have no proportions, e.g. {missing[0]!r}; "
                            f"delete it and rerun the deconvolution")
    adata.obsm[DECONVOLVED] = table.loc[spots].set_axis(adata.obs_names, axis=0)
    adata.uns["s3r_input"] = {"matrix": str(h5ad)}
    return adata
