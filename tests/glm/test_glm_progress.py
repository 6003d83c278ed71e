"""Progress lines of long GLM fits (a count-family screen runs for minutes): where the fit stands, throttled."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from s3r.glm import GLMNet
from s3r.glm import progress as progress_module


def _poisson(n=300, p=4, B=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    beta = np.zeros((B, p))
    beta[:, 0] = 0.5
    Y = rng.poisson(np.exp(0.5 + X @ beta.T)).astype(np.float64)
    return X, Y


def test_every_path_point_and_cv_fold_is_reported(monkeypatch):
    monkeypatch.setattr(progress_module, "EVERY", 0.0)
    X, Y = _poisson()
    lines = []
    model = GLMNet("poisson", n_alphas=5, cv=3, progress=lines.append).fit(X, Y)
    assert lines.pop(0) == "fitting 6 responses × 4 features (poisson); 0 s"  # before the null model, which can take minutes
    assert len(lines) == 5 + 3 * 5  # the full-data path, then each fold's path on the same grid
    assert [line.split(":")[0] for line in lines] == ["path"] * 5 + [f"CV fold {f}/3" for f in (1, 2, 3) for _ in range(5)]
    assert all(f"λ {k}/5 (" in line for line, k in zip(lines, list(range(1, 6)) * 4))
    for k, line in enumerate(lines[:5]):  # the full-data path's own figures
        assert f"({np.median(model.alphas_[k]):.3g}), median {np.median(model.n_nonzero_path_[k]):g} non-zero;" in line
    assert np.median(model.n_nonzero_path_[0]) == 0 and np.median(model.n_nonzero_path_[4]) >= 1  # λ_max, then the effect
    assert lines[4].rstrip().endswith(" s")
    assert not hasattr(model, "_progress")  # the reporter lives for one fit: the fitted model pickles
    model.set_params(progress=None)
    pickle.loads(pickle.dumps(model))


def test_lines_are_throttled_but_each_path_end_is_reported():
    X, Y = _poisson()
    lines = []
    GLMNet("poisson", n_alphas=8, cv=2, progress=lines.append).fit(X, Y)  # a fit of ~1 s: well inside EVERY
    assert progress_module.EVERY >= 5
    assert [line.split(":")[0] for line in lines] == ["fitting 6 responses × 4 features (poisson); 0 s", "path", "CV fold 1/2", "CV fold 2/2"]
    assert all("λ 8/8" in line for line in lines[1:])


def test_response_blocks_and_theta_are_named(monkeypatch):
    monkeypatch.setattr(progress_module, "EVERY", 0.0)
    X, Y = _poisson(B=5)
    lines = []
    GLMNet("negative_binomial", n_alphas=3, batch_size=3, progress=lines.append).fit(X, sp.csr_matrix(Y))
    assert [line.split(":")[0] for line in lines] == (["responses 1–3 of 5"] + ["responses 1–3 of 5, path"] * 3
                                                      + ["responses 4–5 of 5"] + ["responses 4–5 of 5, path"] * 3)
    assert lines[0] == "responses 1–3 of 5: fitting 3 responses × 4 features (negative_binomial); 0 s"
    assert all("median θ " in line for line in lines if ", path:" in line)


def test_silent_without_a_callable(capsys):
    X, Y = _poisson()
    GLMNet("poisson", n_alphas=3).fit(X, Y)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_reports_progress_unless_quiet(quiet, tmp_path, capsys):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    from s3r.cli import main

    X, Y = _poisson(B=2)
    ad = anndata.AnnData(X=Y, obs=pd.DataFrame({f"f{j}": X[:, j] for j in range(X.shape[1])}, index=[f"c{i}" for i in range(len(X))]),
                         var=pd.DataFrame(index=["g1", "g2"]))
    ad.write_h5ad(tmp_path / "cells.h5ad")
    rc = main(["glm", "--h5ad", str(tmp_path / "cells.h5ad"), "--features", "obs:f0,f1,f2,f3", "--responses", "g1,g2", "--family", "poisson",
               "--n-alphas", "4", "--out", str(tmp_path / "out")] + (["--quiet"] if quiet else []))
    assert rc == 0
    err = capsys.readouterr().err
    if quiet:
        assert err == ""
    else:
        assert "s3r glm: path: λ 4/4 (" in err
