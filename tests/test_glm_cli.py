"""``s3r glm`` end to end on a small simulated perturb-seq AnnData file."""

import numpy as np
import pandas as pd
import pytest

from s3r.cli import main
from s3r.perturb import simulate_perturbseq

anndata = pytest.importorskip("anndata")


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    counts, obs, effects, prog = simulate_perturbseq(n_cells=600, n_genes=30, n_perturbations=4, n_programmes=2, seed=3)
    obs["lib"] = np.log(counts.sum(1))
    ad = anndata.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=[f"gene_{j + 1}" for j in range(30)]))
    path = tmp_path_factory.mktemp("glm") / "cells.h5ad"
    ad.write_h5ad(path)
    return path, effects


def test_perturbseq_mode_writes_programmes(h5ad, tmp_path):
    path, effects = h5ad
    genes = ",".join(f"gene_{j + 1}" for j in range(30))
    rc = main(["glm", "--h5ad", str(path), "--perturbation", "perturbation", "--covariates", "batch,pct_mito",
               "--responses", genes, "--family", "poisson", "--alpha", "0.01", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    coef = pd.read_csv(tmp_path / "coefficients.csv", index_col=0)
    assert list(coef.index) == ["P1", "P2", "P3", "P4"] and coef.shape == (4, 30)
    assert np.corrcoef(coef.to_numpy().ravel(), effects.ravel())[0, 1] > 0.9
    for name in ("programmes.csv", "programme_scores.csv", "covariate_coefficients.csv", "scores.csv", "path.npz", "glm.json"):
        assert (tmp_path / name).exists()


def test_features_mode_with_offset_and_cv(h5ad, tmp_path):
    path, _ = h5ad
    rc = main(["glm", "--h5ad", str(path), "--features", "obs:perturbation", "--covariates", "batch", "--responses", "gene_1,gene_2",
               "--family", "negative_binomial", "--offset", "lib", "--n-alphas", "6", "--cv", "3", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    scores = pd.read_csv(tmp_path / "scores.csv", index_col=0)
    assert list(scores.index) == ["gene_1", "gene_2"] and "theta" in scores
    path_npz = np.load(tmp_path / "path.npz")
    assert path_npz["cv_deviance"].shape == (6, 2)


def test_bad_input_is_one_line(h5ad, tmp_path, capsys):
    path, _ = h5ad
    rc = main(["glm", "--h5ad", str(path), "--perturbation", "nope", "--out", str(tmp_path)])
    assert rc == 2
    assert "perturbation column 'nope'" in capsys.readouterr().err


def test_s3r_fit_family_poisson(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    coords = rng.uniform(0, 10, (n, 2))
    X = np.c_[np.ones(n), rng.normal(size=n)]
    y = rng.poisson(np.exp(1 + 0.5 * X[:, 1]))
    ids = [f"s{i}" for i in range(n)]
    pd.DataFrame(X.T, index=["f1", "f2"], columns=ids).to_csv(tmp_path / "X.csv")
    pd.DataFrame({"target": y}, index=ids).to_csv(tmp_path / "Y.csv")
    pd.DataFrame(coords, columns=["row", "col"], index=ids).to_csv(tmp_path / "C.csv")
    rc = main(["fit", "--x", str(tmp_path / "X.csv"), "--y", str(tmp_path / "Y.csv"), "--coords", str(tmp_path / "C.csv"),
               "--family", "poisson", "--k", "4", "--scaling", "reference", "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 0
    assert (tmp_path / "out" / "fit.json").exists()
