"""A count family set in the workflow config: targets stay raw counts, the offset travels in the prepared
sample, and contradictory settings stop the run at parse time."""

from __future__ import annotations

import shutil
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

from s3r.errors import S3RInputError
from s3r.preprocess import prepare_h5ad, read_prepared, write_prepared

from helpers import REPO, snakemake


@pytest.fixture
def counts_h5ad(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    counts = rng.poisson(5.0, size=(n, 6)).astype(float)
    counts[:, 0] += 1  # no empty spot
    ids = [f"s{i}" for i in range(n)]
    anndata.AnnData(
        X=counts, obs=pd.DataFrame({"depth": rng.normal(size=n)}, index=ids),
        var=pd.DataFrame(index=["g1", "g2", "g3", "g4", "g5", "target"]), obsm={"spatial": rng.uniform(size=(n, 2))},
    ).write_h5ad(tmp_path / "counts.h5ad")
    return tmp_path / "counts.h5ad", counts


def test_count_family_keeps_raw_targets_and_stores_the_offset(counts_h5ad, tmp_path):
    path, counts = counts_h5ad
    prepared = prepare_h5ad(path, targets=["target"], features="all", raw_targets=True, offset="log_library_size", standardize=False)
    np.testing.assert_array_equal(prepared.Y[:, 0], counts[:, 5])  # the data fit sees counts
    np.testing.assert_allclose(prepared.offset, np.log(counts.sum(1)))  # library size over every gene
    np.testing.assert_allclose(prepared.X, np.log1p(counts[:, :5] / counts.sum(1, keepdims=True) * 1e4))  # features normalised
    write_prepared(tmp_path / "p.npz", prepared)
    np.testing.assert_array_equal(read_prepared(tmp_path / "p.npz").offset, prepared.offset)
    gaussian = prepare_h5ad(path, targets=["target"], features="all", standardize=False)
    assert gaussian.offset is None and not np.array_equal(gaussian.Y[:, 0], counts[:, 5])
    column = prepare_h5ad(path, targets=["target"], features="all", raw_targets=True, offset="depth")
    np.testing.assert_allclose(column.offset, anndata.read_h5ad(path).obs["depth"])
    with pytest.raises(S3RInputError, match="offset column 'deep' is not in .obs"):
        prepare_h5ad(path, targets=["target"], features="all", raw_targets=True, offset="deep")


def _dry_run(workdir: Path, model_lines: str, preprocess_lines: str = ""):
    config = workdir / "config" / "config.yaml"
    text = config.read_text().replace("  max_iter: 20000\n", "  max_iter: 20000\n" + model_lines, 1)  # inside model:
    config.write_text(text.replace("  standardize: true ", preprocess_lines + "  standardize: true ", 1))
    result = snakemake(workdir, "-n", "--quiet", "rules")
    return result.returncode, result.stdout + result.stderr


def test_config_family_settings_checked_at_parse_time(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    # the offset is a preprocessing choice (which values enter log mu), not a model parameter
    code, text = _dry_run(tmp_path, "  family: gaussian\n", "  offset: log_library_size\n")
    assert code != 0 and "config preprocess.offset applies to the count families" in text, text[-2000:]
    shutil.copytree(REPO / "config", tmp_path / "config", dirs_exist_ok=True)
    code, text = _dry_run(tmp_path, "  family: negative_binomial\n  theta: estimate\n  offset: log_library_size\n")
    assert code != 0 and "unknown setting 'model.offset'" in text, text[-2000:]
    shutil.copytree(REPO / "config", tmp_path / "config", dirs_exist_ok=True)
    code, text = _dry_run(tmp_path, "  family: negative_binomial\n  theta: estimate\n", "  offset: log_library_size\n")
    assert code == 0 and "tune_fold" in text, text[-2000:]
