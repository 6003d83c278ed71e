"""`s3r report`: fit + tune directories in, figures, tables and one self-contained HTML page out."""

import base64
import re

import numpy as np
import pandas as pd
import pytest

from helpers import tuned_fit
from s3r.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_report")
    sim, _, _ = tuned_fit(root, "three_regions_highdim", {"n_trials": 4, "rounds": 1, "folds": 2})
    # a deconvolution of the same spots: cell-type scores planted on the simulated regions
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.5, 1.0, size=(sim.n_spots, 4))
    scores[np.arange(sim.n_spots), sim.regions] += 3.0
    pd.DataFrame(scores, index=sim.spot_ids, columns=[f"type_{i}" for i in range(4)]).to_csv(root / "S.csv")
    pd.DataFrame(sim.coords, index=sim.spot_ids, columns=["x", "y"]).to_csv(root / "C.csv")
    assert main(["deconvolve", "--scores", str(root / "S.csv"), "--coords", str(root / "C.csv"), "--components", "3",
                 "--max-iter", "5", "--out", str(root / "deconv"), "--quiet"]) == 0
    return root


def test_report_command_writes_page_with_every_section(dirs, capsys):
    out = dirs / "report"
    assert main(["report", "--fit", str(dirs / "fit"), "--tune", str(dirs / "tune"), "--title", "sim", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    sections = re.findall(r"<section id='([a-z_]+)'>", page)
    assert sections == ["coefficient_maps", "heatmap", "features", "tuning_history", "tuning_parameters", "tuning_folds",
                        "convergence", "observed_vs_predicted"]
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 7
    for encoded in images:  # embedded, so the page stands alone; each decodes to the PNG written beside it
        assert base64.b64decode(encoded)[:8] == b"\x89PNG\r\n\x1a\n"
    assert base64.b64decode(images[0]) == (out / "coefficient_maps.png").read_bytes()
    links = re.findall(r"<a href='([^']+)'>", page)  # vector copies and tables, relative to the page
    assert "coefficient_maps.svg" in links and "features.tsv" in links and "trials.tsv" not in links
    assert all((out / link).is_file() for link in links)
    features = pd.read_csv(out / "features.tsv", sep="\t")
    for name in features["feature"]:
        assert f"<td>{name}</td>" in page
    assert "open" in capsys.readouterr().err


def test_report_with_a_deconvolution_adds_its_maps(dirs):
    out = dirs / "with_deconv"
    assert main(["report", "--fit", str(dirs / "fit"), "--deconv", str(dirs / "deconv"), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    for name in ("proportions", "regions", "edge_weights"):
        assert f"<section id='{name}'>" in page and (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    regions = pd.read_csv(out / "regions.csv")
    assert len(regions) == len(pd.read_csv(dirs / "S.csv"))


def test_report_without_tuning_has_no_tuning_sections(dirs):
    out = dirs / "plain"
    assert main(["report", "--fit", str(dirs / "fit"), "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    assert "tuning_history" not in page and not (out / "tuning_history.png").exists()
    assert pd.read_csv(out / "features.tsv", sep="\t")["folds_selected"].isna().all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fit", "{root}/missing"], r"missing/fit\.json: not found; --fit must be a directory written by 's3r fit'"),
        (["--fit", "{root}/fit", "--tune", "{root}/nowhere"], r"nowhere: --tune directory not found; pass the --out directory of s3r tune"),
        (["--fit", "{root}/fit", "--max-features", "0"], r"--max-features must be ≥ 1, got 0"),
        (["--fit", "{root}/fit", "--deconv", "{root}/none"], r"none: --deconv directory not found; pass the --out directory of s3r deconvolve"),
    ],
)
def test_bad_input_is_one_line(dirs, capsys, args, message):
    code = main(["report", *[a.format(root=dirs) for a in args], "--out", str(dirs / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_report_with_the_input_data_recomputes_observed_vs_predicted(dirs, tmp_path):
    """A fit directory without stored fitted values (older s3r fit) gets the figure when the data are passed."""
    import shutil

    from s3r.simulate import simulate, write_reference_csv

    sim = simulate("three_regions_highdim", sigma=1.0, seed=0)  # the data tuned_fit fitted
    csv = write_reference_csv(sim, tmp_path / "csv")
    old = tmp_path / "fit"
    shutil.copytree(dirs / "fit", old)
    with np.load(old / "coefficients.npz") as f:
        np.savez_compressed(old / "coefficients.npz", **{k: f[k] for k in f.files if k not in ("observed", "fitted")})
    assert main(["report", "--fit", str(old), "--out", str(tmp_path / "plain")]) == 0
    assert "observed_vs_predicted" not in (tmp_path / "plain" / "index.html").read_text()
    data = ["--x", str(csv["X"]), "--y", str(csv["Y"]), "--coords", str(csv["coords"])]
    assert main(["report", "--fit", str(old), *data, "--out", str(tmp_path / "with")]) == 0
    assert "<section id='observed_vs_predicted'>" in (tmp_path / "with" / "index.html").read_text()
    # identical values to those the complete fit directory stores → identical figure
    assert main(["report", "--fit", str(dirs / "fit"), "--out", str(tmp_path / "stored")]) == 0
    assert (tmp_path / "with" / "observed_vs_predicted.png").read_bytes() == (tmp_path / "stored" / "observed_vs_predicted.png").read_bytes()


def test_report_with_data_of_other_spots_is_one_line(dirs, tmp_path, capsys):
    from s3r.simulate import simulate

    sim = simulate("three_regions_highdim", sigma=1.0, seed=0)
    ids = [f"other_{i}" for i in range(sim.n_spots)]
    pd.DataFrame(sim.X.T, index=sim.feature_names, columns=ids).to_csv(tmp_path / "X.csv")
    pd.DataFrame({"target": sim.y}, index=ids).to_csv(tmp_path / "Y.csv")
    pd.DataFrame({"row": sim.coords[:, 0], "col": sim.coords[:, 1]}, index=ids).to_csv(tmp_path / "C.csv")
    code = main(["report", "--fit", str(dirs / "fit"), "--x", str(tmp_path / "X.csv"), "--y", str(tmp_path / "Y.csv"),
                 "--coords", str(tmp_path / "C.csv"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(rf"X\.csv: {sim.n_spots} of the fit's {sim.n_spots} spots are missing \(e\.g\. '{sim.spot_ids[0]}'\); "
                     r"pass the data the fit was run on", err), err
