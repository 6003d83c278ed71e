"""Sample-sheet rows with a ``spaceranger`` or ``xenium`` folder, checked when the workflow starts.

The folder is read once by the workflow's main process, so a bad folder (no matrix, barcodes missing from the
positions, nothing in tissue, a target gene not in the matrix) stops the run before any job with one line
naming the file and the fix. The row then becomes an ordinary AnnData sample whose ``.h5ad`` the rule
``import_folder`` writes to ``results/input/<sample>.h5ad``, so every later rule is unchanged.
"""

from __future__ import annotations

from pathlib import Path

from s3r.errors import S3RInputError

FOLDER_COLUMNS = ("spaceranger", "xenium")
IMPORTED = "results/input/{sample}.h5ad"


def _matrix_path(kind: str, path: str, bin_size) -> Path:
    if kind == "spaceranger":
        from s3r.readers.spaceranger import spaceranger_folder

        return spaceranger_folder(path, None if bin_size is None else int(bin_size)) / "filtered_feature_bc_matrix.h5"
    folder = Path(path)
    if not (folder / "cell_feature_matrix.h5").exists() and (folder / "outs").is_dir():
        folder = folder / "outs"
    return folder / "cell_feature_matrix.h5"


def _gene_names(kind: str, path: str, bin_size, deep: bool) -> tuple[list[str], list[str], Path]:
    """Gene names (and .obs columns) of the folder; ``deep`` reads and checks everything, else only the names."""
    from s3r.readers import read_spatial
    from s3r.readers.tenx_h5 import read_feature_barcode_h5, unique_names

    matrix = _matrix_path(kind, path, bin_size)
    if deep:
        adata = read_spatial(kind, path, bin_size=None if bin_size is None else int(bin_size), images=False)
        return [str(v) for v in adata.var_names], [str(c) for c in adata.obs.columns], matrix
    mat = read_feature_barcode_h5(matrix, fix=f"point column {kind!r} at the {kind} outs/ folder")
    genes = mat.features.loc[mat.features["feature_type"] == "Gene Expression", "name"]
    return unique_names(list(genes)), [], matrix


def check_folder_sample(row, record: dict, deep: bool = True):
    """A SampleSpec for a row whose input is a Space Ranger or Xenium folder (columns as for an .h5ad row)."""
    from s3r.workflow import samples as ws
    from s3r.workflow.sheet import names_or_file, split_names, suggest

    given = [c for c in FOLDER_COLUMNS if record.get(c)]
    if len(given) > 1:
        raise row.error(given[1], "give one input folder per row (spaceranger or xenium), not both")
    kind = given[0]
    path = str(record[kind])
    for c in ("h5ad", "x_csv", "y_csv", "coords_csv"):
        if record.get(c):
            raise row.error(c, f"give either a folder in column {kind!r} or column {c!r}, not both")
    bin_size = record.get("bin_size")
    if bin_size is not None and kind != "spaceranger":
        raise row.error("bin_size", "bin sizes are Visium HD's (column 'spaceranger'); leave it empty")
    for c in ("layer", "spatial_key"):
        if record.get(c) and not (c == "spatial_key" and record[c] == "spatial"):
            raise row.error(c, f"a {kind} folder has counts in .X and coordinates in .obsm['spatial']; leave {c!r} empty")
    try:
        genes, obs_columns, matrix = _gene_names(kind, path, bin_size, deep)
    except S3RInputError as err:
        raise row.error(kind, str(err)) from None

    targets_value = record["targets"]
    features_value = record.get("features") or "all"
    if targets_value == "all":
        if features_value == "all":
            raise row.error("targets", "'all' targets with 'all' features leaves nothing to regress on; list the features")
        excluded = set(names_or_file(row, "features", features_value))
        targets = [g for g in genes if g not in excluded]
    else:
        targets = names_or_file(row, "targets", targets_value)
    ws._check_target_names(row, "targets", targets)
    gene_set = set(genes)
    absent = [t for t in targets if t not in gene_set and t not in obs_columns]
    if absent:
        raise row.error("targets", f"target {absent[0]!r} is not a gene of {matrix}{suggest(absent[0], genes)}; check the name")
    if features_value.startswith("obsm:"):
        raise row.error("features", f"a {kind} folder has no .obsm features; list genes, give a file, or write 'all'")
    features = ws._resolve_features(row, features_value, genes, targets)
    covariates = split_names(record["covariates"]) if record.get("covariates") else None
    for c in covariates or []:
        if deep and c not in obs_columns:
            raise row.error("covariates", f"{c!r} is not a column of the {kind} cell/spot table{suggest(c, obs_columns)}; check the name")
    reference = record.get("reference")
    if reference and not Path(reference).is_file():
        raise row.error("reference", f"{reference!r} not found; fix the path")
    spec = ws.SampleSpec(
        name=row.name, line=row.line, kind="h5ad", inputs={"h5ad": IMPORTED.format(sample=row.name)}, targets=targets,
        features=features, covariates=covariates, layer=None, spatial_key="spatial", scores=record.get("scores"),
        reference=reference, cell_type_key=record.get("cell_type_key") or "cell_type",
    )
    spec.source = {"kind": kind, "path": path, "bin_size": None if bin_size is None else int(bin_size), "matrix": str(matrix)}
    return spec
