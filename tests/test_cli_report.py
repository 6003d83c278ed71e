"""`s3r report`: fit + tune directories in, figures, tables and one self-contained HTML page out."""

import base64
import re

import pandas as pd
import pytest

from conftest import tuned_fit
from s3r.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_report")
    tuned_fit(root, "three_regions_highdim", {"n_trials": 4, "rounds": 1, "folds": 2})
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
