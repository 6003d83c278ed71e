"""s3r deconvolve --spaceranger: the folder's counts and coordinates give what the CSV inputs give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from s3r.cli import main
from s3r.readers import read_spaceranger
from tenx_layouts import DLPFC, load_dlpfc, write_spaceranger

REFERENCE = DLPFC.parent / "deconv" / "dlpfc_151675_layers" / "reference.csv"
pytestmark = pytest.mark.skipif(not REFERENCE.is_file(), reason="../shared/data/real is absent")


def test_folder_input_equals_the_csv_input(tmp_path, capsys):
    adata = load_dlpfc()
    genes = [g for g in pd.read_csv(REFERENCE, index_col=0, nrows=0).columns if g in set(adata.var_names)]
    adata = adata[:400, genes[:60]].copy()
    outs = write_spaceranger(tmp_path / "outs", adata, n_off_tissue=3, images=False)
    read = read_spaceranger(outs)
    pd.DataFrame(read.X.toarray(), index=read.obs_names, columns=read.var_names).to_csv(tmp_path / "counts.csv")
    pd.DataFrame(read.obsm["spatial"], index=read.obs_names, columns=["x", "y"]).to_csv(tmp_path / "coords.csv")
    common = ["--reference", str(REFERENCE), "--lambda", "0.1", "--max-iter", "200", "--fixed-weights", "--no-platform-effects",
              "--family", "poisson", "--quiet"]
    assert main(["deconvolve", "--spaceranger", str(outs), *common, "--out", str(tmp_path / "folder")]) == 0
    assert main(["deconvolve", "--counts", str(tmp_path / "counts.csv"), "--coords", str(tmp_path / "coords.csv"), *common,
                 "--out", str(tmp_path / "csv")]) == 0
    a = pd.read_csv(tmp_path / "folder" / "proportions.csv", index_col=0)
    b = pd.read_csv(tmp_path / "csv" / "proportions.csv", index_col=0)
    assert list(a.index) == sorted(map(str, adata.obs_names)) and a.shape == (400, 7)
    pd.testing.assert_frame_equal(a, b)
    code = main(["deconvolve", "--spaceranger", str(outs), "--coords", str(tmp_path / "coords.csv"), *common, "--out", str(tmp_path / "x")])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("error: --spaceranger replaces --counts and --coords; give it with --reference only")
