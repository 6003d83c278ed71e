"""`s3r report`: fit + tune directories in, figures, tables and one self-contained HTML page out."""

import base64
import re

import pandas as pd
import pytest

from s3r import S3R, tune
from s3r.cli import main
from s3r.io import RegressionData
from s3r.results import write_fit
from s3r.simulate import simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_report")
    sim = simulate("three_regions_highdim", sigma=1.0, seed=0)
    data = RegressionData(sim.X, sim.y, sim.coords, sim.spot_ids, sim.feature_names, "target")
    best = tune.run_search(data, {"n_trials": 4, "rounds": 1, "folds": 2}, root / "tune", keep_states=True)
    model = S3R("tv", lambda_smooth=best["lambda_smooth"], alpha=best["alpha"], beta=best["beta"]).fit(sim.X, sim.y, sim.coords)
    write_fit(root / "fit", model, data)
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
    features = pd.read_csv(out / "features.tsv", sep="\t")
    for name in features["feature"]:
        assert f"<td>{name}</td>" in page
    assert "open" in capsys.readouterr().err


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
    ],
)
def test_bad_input_is_one_line(dirs, capsys, args, message):
    code = main(["report", *[a.format(root=dirs) for a in args], "--out", str(dirs / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
