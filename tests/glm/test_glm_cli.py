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
    coef = pd.read_csv(tmp_path / "coefficients.tsv", sep="\t", index_col=0)
    assert list(coef.index) == ["P1", "P2", "P3", "P4"] and coef.shape == (4, 30)
    assert np.corrcoef(coef.to_numpy().ravel(), effects.ravel())[0, 1] > 0.9
    # the workflow's tables, by the workflow's writer: tab-separated, programmes spelled P<n> everywhere
    assert (tmp_path / "coefficients.tsv").read_text().splitlines()[0] == "perturbation\t" + "\t".join(f"gene_{j + 1}" for j in range(30))
    progs = (tmp_path / "programmes.tsv").read_text().splitlines()
    assert progs[0] == "gene\tprogramme" and len(progs) == 31 and all(line.split("\t")[1][0] == "P" for line in progs[1:])
    moved = sorted({line.split("\t")[1] for line in progs[1:]} - {"P0"})
    assert (tmp_path / "programme_scores.tsv").read_text().splitlines()[0] == "\t".join(["perturbation"] + moved)
    assert (tmp_path / "modules.tsv").read_text().splitlines()[0] == "perturbation\tmodule"
    M = (tmp_path / "covariate_coefficients.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in M] == ["covariate", "(intercept)", "batch=b1", "pct_mito"]
    assert (tmp_path / "gene_scores.tsv").read_text().splitlines()[0] == "gene\tdeviance\tdeviance_explained\tpseudo_r2\talpha"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coefficients.tsv", "covariate_coefficients.tsv", "gene_scores.tsv", "glm.json",
                                                          "modules.tsv", "path.npz", "programme_scores.tsv", "programmes.tsv"]


def test_features_mode_with_offset_and_cv(h5ad, tmp_path):
    path, _ = h5ad
    rc = main(["glm", "--h5ad", str(path), "--features", "obs:perturbation", "--covariates", "batch", "--responses", "gene_1,gene_2",
               "--family", "negative_binomial", "--offset", "lib", "--n-alphas", "6", "--cv", "3", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    scores = pd.read_csv(tmp_path / "scores.csv", index_col=0)
    assert list(scores.index) == ["gene_1", "gene_2"] and "theta" in scores
    path_npz = np.load(tmp_path / "path.npz")
    assert path_npz["cv_deviance"].shape == (6, 2)


@pytest.mark.parametrize("flags, steered", [(["--n-alphas", "4"], True), (["--n-alphas", "4", "--cv", "3"], False), (["--alpha", "0.01"], False)])
def test_a_path_without_cv_says_that_lambda_was_not_chosen(h5ad, tmp_path, capsys, flags, steered):
    path, _ = h5ad
    rc = main(["glm", "--h5ad", str(path), "--features", "obs:perturbation", "--responses", "gene_1,gene_2", "--family", "poisson",
               "--out", str(tmp_path), *flags])
    assert rc == 0
    err = capsys.readouterr().err
    assert ("λ was not chosen" in err and "add --cv 5" in err) == steered, err


@pytest.mark.parametrize("flags, message", [
    (["--perturbation", "perturbatio"], "--perturbation column 'perturbatio' is not in .obs (did you mean 'perturbation'?); "
                                        ".obs has 'perturbation', 'batch', 'pct_mito', 'log_total', 'lib'"),
    (["--perturbation", "perturbation", "--control", "contrl"], "control level 'contrl' is not a label of .obs['perturbation'] "
                                                                "(did you mean 'control'?); labels are 'P1', 'P2', 'P3', 'P4', 'control' (pass --control)"),
    (["--perturbation", "perturbation", "--covariates", "batches"], "--covariates column 'batches' is not in .obs (did you mean 'batch'?); "
                                                                    ".obs has 'perturbation', 'batch', 'pct_mito', 'log_total', 'lib'"),
])
def test_bad_input_is_one_line_naming_the_file(h5ad, tmp_path, capsys, flags, message):
    path, _ = h5ad
    rc = main(["glm", "--h5ad", str(path), *flags, "--out", str(tmp_path)])
    assert rc == 2
    assert capsys.readouterr().err.strip() == f"s3r glm: error: {path}: {message}"


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


def _perturb_run(path, out, *extra):
    genes = ",".join(f"gene_{j + 1}" for j in range(30))
    rc = main(["glm", "--h5ad", str(path), "--perturbation", "perturbation", "--covariates", "batch", "--responses", genes,
               "--n-alphas", "8", *extra, "--out", str(out), "--quiet"])
    assert rc == 0
    return pd.read_csv(out / "coefficients.tsv", sep="\t", index_col=0), np.load(out / "path.npz"), __import__("json").loads((out / "glm.json").read_text())


def test_perturbseq_mode_every_model_flag_acts(h5ad, tmp_path):
    """Issue 14: --eps, --selection, --standardize, --dtype and --tol used to be ignored in perturb-seq mode."""
    path, _ = h5ad
    base, bpath, bjson = _perturb_run(path, tmp_path / "base", "--cv", "3")
    assert bjson["report"]["dtype"] == "float64"
    _, epath, _ = _perturb_run(path, tmp_path / "eps", "--cv", "3", "--eps", "0.1")
    np.testing.assert_allclose(epath["alphas"][-1] / epath["alphas"][0], 0.1)
    np.testing.assert_allclose(bpath["alphas"][-1] / bpath["alphas"][0], 1e-3)
    _, spath, _ = _perturb_run(path, tmp_path / "1se", "--cv", "3", "--selection", "1se")
    assert np.all(spath["alpha_index"] <= bpath["alpha_index"]) and np.any(spath["alpha_index"] < bpath["alpha_index"])
    std, _, _ = _perturb_run(path, tmp_path / "std", "--cv", "3", "--standardize")
    assert np.abs(std.to_numpy() - base.to_numpy()).max() > 1e-3
    f32, _, fjson = _perturb_run(path, tmp_path / "f32", "--cv", "3", "--dtype", "float32")
    assert fjson["report"]["dtype"] == "float32"
    np.testing.assert_allclose(f32.to_numpy(), base.to_numpy(), atol=2e-3)
    loose, _, _ = _perturb_run(path, tmp_path / "tol", "--cv", "3", "--tol", "1e-1")
    assert not np.array_equal(loose.to_numpy(), base.to_numpy())
    assert (tmp_path / "base" / "modules.tsv").read_text().splitlines()[0] == "perturbation\tmodule"


@pytest.mark.parametrize("flags, message", [
    (["--perturbation", "perturbation", "--selection", "1se"], "--selection 1se needs --cv"),
    (["--perturbation", "perturbation", "--alpha", "0.1", "--cv", "3"], "--alpha fixes the penalty"),
    (["--perturbation", "perturbation", "--theta", "5"], "--theta is the negative binomial's dispersion"),
    (["--features", "obs:batch", "--control", "ctrl"], "--control and --n-programmes belong to the perturb-seq mode"),
    (["--perturbation", "perturbation", "--offset", "log_library_size"], "perturb-seq mode fits gaussian to log-normalised expression, with no offset"),
    (["--perturbation", "perturbation", "--offset", "library"], "--offset library is now spelled --offset log_library_size"),
])
def test_contradictory_flags_are_refused(h5ad, tmp_path, capsys, flags, message):
    path, _ = h5ad
    rc = main(["glm", "--h5ad", str(path), *flags, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
