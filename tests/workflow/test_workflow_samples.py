"""Sample sheet checks (s3r.workflow): every bad row is reported with its line, its column and a fix, before any job runs."""

from __future__ import annotations

import os
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

from s3r.errors import S3RInputError
from s3r.graph import knn_graph
from s3r.graph_io import read_graph, write_graph
from s3r.simulate_demo import simulate_demo
from s3r.solver.device import choose_device
from s3r.workflow.paths import demo_paths
from s3r.workflow.samples import check_samples, read_sample_sheet
from s3r.workflow.settings import model_settings, tune_settings

HEADER = ["sample", "h5ad", "x_csv", "y_csv", "coords_csv", "targets", "features", "covariates", "alpha"]


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A valid CSV triplet (targets a, b) and an .h5ad (genes g1..g4, targets t1, t2), in the cwd."""
    monkeypatch.chdir(tmp_path)
    spots = [f"s{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(3, 6)), index=["f1", "f2", "f3"], columns=spots).to_csv("X.csv")
    pd.DataFrame(rng.normal(size=(6, 2)), index=spots, columns=["a", "b"]).to_csv("Y.csv")
    pd.DataFrame({"row": np.arange(6.0), "col": np.arange(6.0) ** 2}, index=spots).to_csv("C.csv")
    adata = anndata.AnnData(
        X=rng.poisson(3, size=(6, 6)).astype(np.float32),
        obs=pd.DataFrame({"batch": list("aabbab"), "depth": np.arange(6.0)}, index=spots),
        var=pd.DataFrame(index=["g1", "g2", "g3", "g4", "t1", "t2"]),
        obsm={"spatial": rng.normal(size=(6, 2)), "props": rng.dirichlet(np.ones(3), size=6)},
    )
    adata.write_h5ad("d.h5ad")
    return tmp_path


def sheet(rows, header=HEADER, name="samples.tsv"):
    lines = ["\t".join(header)] + ["\t".join(str(c) for c in row) for row in rows]
    Path(name).write_text("\n".join(lines) + "\n")
    return name


def csv_row(**over):
    row = dict(sample="c1", h5ad="", x_csv="X.csv", y_csv="Y.csv", coords_csv="C.csv", targets="a,b",
               features="all", covariates="", alpha="")
    row.update(over)
    return [row[h] for h in HEADER]


def h5ad_row(**over):
    row = dict(sample="h1", h5ad="d.h5ad", x_csv="", y_csv="", coords_csv="", targets="t1,t2",
               features="all", covariates="", alpha="")
    row.update(over)
    return [row[h] for h in HEADER]


def check(path, demo=None):
    frame, lines = read_sample_sheet(path)
    return check_samples(frame, lines, sheet=path, demo=demo)


def test_valid_sheet_resolves_targets_and_features(inputs):
    path = sheet([csv_row(), h5ad_row(features="g1,g2", covariates="batch,depth"), h5ad_row(sample="h2", targets="t1", features="obsm:props")])
    specs = check(path)
    assert specs["c1"].kind == "csv" and specs["c1"].targets == ["a", "b"] and specs["c1"].features == "all"
    assert specs["h1"].kind == "h5ad" and specs["h1"].features == ["g1", "g2"]
    assert specs["h1"].covariates == ["batch", "depth"] and specs["h1"].inputs == {"h5ad": "d.h5ad"}
    assert specs["h2"].features == "obsm:props"


def test_all_targets_and_target_file(inputs):
    Path("targets.txt").write_text("# genes\nt2\n\nt1\n")
    specs = check(sheet([csv_row(targets="all"), h5ad_row(targets="targets.txt")]))
    assert specs["c1"].targets == ["a", "b"]
    assert specs["h1"].targets == ["t2", "t1"]
    specs = check(sheet([h5ad_row(targets="all", features="g1,g2")]))
    assert specs["h1"].targets == ["g3", "g4", "t1", "t2"]


def test_a_long_target_list_is_a_list_not_a_file_name(inputs):
    """Hundreds of targets make a value longer than any file name; it used to end in OSError 'File name too long'."""
    from s3r.workflow.sheet import Row, names_or_file

    names = [f"GENE{i:04d}-AS1" for i in range(400)]
    assert names_or_file(Row("s.tsv", 2, "h1"), "targets", ",".join(names)) == names


def test_comments_blank_lines_and_overrides(inputs):
    Path("s.tsv").write_text("# my samples\n" + "\t".join(HEADER) + "\n\n" + "\t".join(csv_row(alpha="0.5")) + "\n")
    frame, lines = read_sample_sheet("s.tsv")
    assert lines == [4]
    spec = check_samples(frame, lines, sheet="s.tsv")["c1"]
    config = {
        "model": {"smooth": "tv", "lambda_smooth": 0.1, "alpha": 0.01, "beta": 0.01},
        "graph": {"method": "knn", "k": 7, "radius": None, "max_edge_length": None},
    }
    settings = model_settings(config, spec)
    assert settings["alpha"] == 0.5 and settings["lambda_smooth"] == 0.1 and settings["graph"] == "knn"
    # under tuning the sheet's value holds alpha fixed for this sample (it used to be searched over silently)
    tuned = tune_settings({**config, "tune": {"n_trials": 4, "rounds": 2, "folds": 2}}, spec)
    assert tuned["space"]["alpha"] == 0.5 and "lambda_smooth" not in tuned["space"]
    from s3r.tune import resolve_config

    resolved = resolve_config(tuned)
    assert resolved["space"]["alpha"] == 0.5 and resolved["space"]["beta"]["relative"] is True


@pytest.mark.parametrize(
    "rows, fragments",
    [
        ([csv_row(x_csv="missing/X.csv")], ["line 2", "sample 'c1'", "column 'x_csv'", "not found", "fix the path"]),
        ([h5ad_row(h5ad="nope.h5ad")], ["column 'h5ad'", "not found"]),
        ([csv_row(), csv_row(y_csv="Y.csv")], ["line 3", "column 'sample'", "duplicate", "line 2"]),
        ([csv_row(targets="a,zz")], ["column 'targets'", "'zz'", "not a column of Y.csv"]),
        ([h5ad_row(targets="t1,t9")], ["column 'targets'", "'t9'", "not a gene"]),
        ([csv_row(alpha="abc")], ["column 'alpha'", "'abc' is not a number"]),
        ([csv_row(features="f1,a")], ["column 'features'", "target 'a' is also listed as a feature"]),
        ([csv_row(features="f1,f9")], ["column 'features'", "'f9'"]),
        ([h5ad_row(covariates="batch,nope")], ["column 'covariates'", "'nope'"]),
        ([h5ad_row(features="obsm:nope")], ["column 'features'", ".obsm key 'nope'"]),
        ([csv_row(x_csv="", y_csv="", coords_csv="")], ["column 'h5ad'", "no input"]),
        ([csv_row(coords_csv="")], ["column 'coords_csv'", "needs all of x_csv, y_csv and coords_csv"]),
        ([csv_row(sample="a/b")], ["column 'sample'", "letters, digits"]),
        ([csv_row(targets="a,a")], ["column 'targets'", "listed twice"]),
        ([h5ad_row(targets="all")], ["column 'targets'", "nothing to regress on"]),
        ([csv_row(targets="genes.txt")], ["column 'targets'", "file 'genes.txt' not found"]),
    ],
)
def test_bad_rows_name_line_column_and_fix(inputs, rows, fragments):
    with pytest.raises(S3RInputError) as err:
        check(sheet(rows))
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_spot_ids_differ_between_files(inputs):
    y = pd.read_csv("Y.csv", index_col=0)
    y.index = ["s0", "s1", "s2", "s3", "s4", "other"]
    y.to_csv("Y2.csv")
    with pytest.raises(S3RInputError) as err:
        check(sheet([csv_row(y_csv="Y2.csv")]))
    assert "column 'y_csv'" in str(err.value) and "'other'" in str(err.value)
    c = pd.read_csv("C.csv", index_col=0).iloc[:5]
    c.to_csv("C2.csv")
    with pytest.raises(S3RInputError) as err:
        check(sheet([csv_row(coords_csv="C2.csv")]))
    assert "column 'coords_csv'" in str(err.value) and "'s5'" in str(err.value)


def test_non_numeric_values(inputs):
    text = Path("X.csv").read_text().splitlines()
    text[2] = text[2].rsplit(",", 1)[0] + ",n/a?"
    Path("X2.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(S3RInputError) as err:
        check(sheet([csv_row(x_csv="X2.csv")]))
    assert "column 'x_csv'" in str(err.value) and "non-numeric" in str(err.value) and "'n/a?'" in str(err.value)


def test_sheet_structure_errors(inputs):
    Path("commas.tsv").write_text("sample,targets\na,b\n")
    with pytest.raises(S3RInputError, match="separate the columns with tabs"):
        read_sample_sheet("commas.tsv")
    with pytest.raises(S3RInputError, match="unknown column 'taregts'.*did you mean 'targets'"):
        read_sample_sheet(sheet([["a", "b"]], header=["sample", "taregts"]))
    with pytest.raises(S3RInputError, match="lacks column 'targets'"):
        read_sample_sheet(sheet([["a"]], header=["sample"]))
    with pytest.raises(S3RInputError, match="not found; set 'samples'"):
        read_sample_sheet("absent.tsv")
    Path("extra.tsv").write_text("sample\ttargets\na\tb\tc\n")
    with pytest.raises(S3RInputError, match="line 2: 3 tab-separated fields"):
        read_sample_sheet("extra.tsv")


def test_demo_inputs_are_checked_against_the_demo_spec(inputs):
    demo = {"toy": {"targets": ["u", "v"]}}
    paths = demo_paths("toy")
    specs = check(sheet([h5ad_row(h5ad=paths["h5ad"], targets="all")]), demo=demo)
    assert specs["h1"].targets == ["u", "v"]
    with pytest.raises(S3RInputError, match="column 'targets'.*not simulated"):
        check(sheet([csv_row(x_csv=paths["x_csv"], y_csv=paths["y_csv"], coords_csv=paths["coords_csv"], targets="w")]), demo=demo)


def test_simulate_demo_is_deterministic_and_readable(tmp_path):
    spec = {"layout": "three_regions", "geometry": "uniform", "n_spots": 60, "n_features": 14, "sigma": 0.5,
            "seed": 3, "targets": ["ta", "tb"]}
    outs = []
    for run in ("one", "two"):
        paths = {k: str(tmp_path / run / Path(v).name) for k, v in demo_paths("toy").items()}
        simulate_demo(spec, **paths)
        outs.append(paths)
    for key in ("x_csv", "y_csv", "coords_csv"):
        assert Path(outs[0][key]).read_bytes() == Path(outs[1][key]).read_bytes()
    y = pd.read_csv(outs[0]["y_csv"], index_col=0)
    assert list(y.columns) == ["ta", "tb"] and len(y) == 60
    assert not np.allclose(y["ta"], y["tb"])
    adata = anndata.read_h5ad(outs[0]["h5ad"])
    assert list(adata.var_names[-2:]) == ["ta", "tb"] and adata.obsm["spatial"].shape == (60, 2)
    np.testing.assert_allclose(adata[:, "tb"].X.ravel(), y["tb"].to_numpy())


def test_graph_round_trip(tmp_path):
    graph = knn_graph(np.random.default_rng(1).uniform(size=(30, 2)), k=4)
    write_graph(tmp_path / "g.npz", graph)
    back = read_graph(tmp_path / "g.npz")
    assert back.n_nodes == 30 and back.method == graph.method
    np.testing.assert_array_equal(back.edges, graph.edges)
    np.testing.assert_array_equal(back.weights, graph.weights)


def test_choose_device_needs_a_granted_gpu(capsys):
    import torch

    assert choose_device(0) == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device(1) == expected
    if expected == "cpu":
        assert "CUDA is not available" in capsys.readouterr().err


def test_shallow_check_skips_reading_tables(inputs):
    """Jobs re-parse the workflow: with deep=False a broken X is not re-read (the main process caught it)."""
    Path("X.csv").write_text(Path("X.csv").read_text().replace(",", ",oops", 1))
    path = sheet([csv_row()])
    with pytest.raises(S3RInputError):
        check(path)
    frame, lines = read_sample_sheet(path)
    assert check_samples(frame, lines, sheet=path, deep=False)["c1"].targets == ["a", "b"]


def test_scripts_import_the_checkout_library():
    """One mechanism: common.smk puts src/ first on PYTHONPATH, which every script's interpreter inherits."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    common = (repo / "workflow" / "rules" / "common.smk").read_text()
    assert "PYTHONPATH=os.pathsep.join([_SRC" in common
    assert not any("sys.path" in s.read_text() for s in (repo / "scripts").glob("*.py"))
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    code = "import s3r; print(s3r.__file__)"
    module = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=True).stdout
    assert Path(module.strip()).is_relative_to(repo / "src")


def test_visium_array_indices_are_refused_at_start_up(inputs):
    """Coordinates given as Space Ranger's array indices squash the hexagonal grid (s3r.graph.lattice): the sheet
    check names the sample, the column and the fix before any job."""
    array = np.array([(c, r) for r in range(8) for c in range(16) if (r + c) % 2 == 0], dtype=float)
    spots = [f"s{i}" for i in range(len(array))]
    rng = np.random.default_rng(1)
    adata = anndata.AnnData(X=rng.poisson(3, size=(len(spots), 3)).astype(np.float32),
                            var=pd.DataFrame(index=["g1", "g2", "t1"]), obs=pd.DataFrame(index=spots), obsm={"spatial": array})
    adata.write_h5ad("array.h5ad")
    pd.DataFrame(rng.normal(size=(2, len(spots))), index=["f1", "f2"], columns=spots).to_csv("Xa.csv")
    pd.DataFrame(rng.normal(size=(len(spots), 1)), index=spots, columns=["a"]).to_csv("Ya.csv")
    pd.DataFrame({"row": array[:, 1], "col": array[:, 0]}, index=spots).to_csv("Ca.csv")
    for row, column, path in ((h5ad_row(h5ad="array.h5ad", targets="t1"), "h5ad", "array.h5ad .obsm['spatial']"),
                              (csv_row(x_csv="Xa.csv", y_csv="Ya.csv", coords_csv="Ca.csv", targets="a"), "coords_csv", "Ca.csv")):
        with pytest.raises(S3RInputError) as err:
            check(sheet([row]))
        message = str(err.value)
        assert "\n" not in message and f"column '{column}'" in message and path in message, message
        assert "Visium array indices" in message and "pxl_col_in_fullres" in message, message
    adata.obsm["spatial"] = array * np.array([1.0, np.sqrt(3)])  # the fix: positions on the hexagonal grid
    adata.write_h5ad("array.h5ad")
    assert check(sheet([h5ad_row(h5ad="array.h5ad", targets="t1")]))["h1"].targets == ["t1"]
