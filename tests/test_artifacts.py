"""The parameter file: one writer, one reader, and the flat files of earlier versions still read."""

from __future__ import annotations

import json

import pytest

from s3r.artifacts import PARAMS_FORMAT, read_params_file, write_params
from s3r.errors import S3RInputError
from s3r.results import read_params


def test_written_file_reads_back(tmp_path):
    path = tmp_path / "best_params.json"
    tuning = {"trial": 3, "cv_loss": 0.5, "model": {"family": "poisson"}}
    write_params(path, {"lambda_smooth": 0.1, "alpha": 0.2, "beta": 0.3, "smooth": "tv"}, source="tune", tuning=tuning,
                 sample="s1", target="y")
    raw = json.loads(path.read_text())
    assert list(raw) == ["format", "sample", "target", "source", "params", "tuning"] and raw["format"] == PARAMS_FORMAT
    doc = read_params_file(path)
    assert doc == {"source": "tune", "params": raw["params"], "tuning": tuning, "sample": "s1", "target": "y"}
    assert read_params(path) == {"lambda_smooth": 0.1, "alpha": 0.2, "beta": 0.3, "smooth": "tv", "model": {"family": "poisson"}}
    write_params(path, {"lambda_smooth": 0.1, "alpha": 0.2, "beta": 0.3}, source="config")
    assert read_params_file(path)["tuning"] is None and "tuning" not in json.loads(path.read_text())


def test_flat_files_of_earlier_versions(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"lambda_smooth": 1.0, "alpha": 2.0, "beta": 3.0, "smooth": "tv", "trial": 4, "cv_loss": 0.1,
                                "model": {"family": "gaussian"}}))
    doc = read_params_file(flat)
    assert doc["source"] == "tune" and doc["tuning"]["trial"] == 4 and doc["params"]["alpha"] == 2.0
    assert read_params(flat)["model"] == {"family": "gaussian"}
    reference = tmp_path / "reference.json"
    reference.write_text(json.dumps({"lambda": 1.0, "alpha": 2.0, "beta": 3.0}))
    assert read_params_file(reference) == {"source": None, "params": {"alpha": 2.0, "beta": 3.0, "lambda_smooth": 1.0},
                                           "tuning": None, "sample": None, "target": None}
    with pytest.raises(S3RInputError, match="not found"):
        read_params_file(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(S3RInputError, match="expected a JSON object"):
        read_params_file(tmp_path / "bad.json")
