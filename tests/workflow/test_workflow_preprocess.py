"""The preprocess step: counts are normalised, continuous values are not, features are chosen and standardised."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from s3r.errors import S3RInputError
from s3r.preprocess import (
    holds_counts,
    prepare_h5ad,
    prepare_reference_csv,
    read_prepared,
    write_prepared,
)

SPOTS = [f"s{i}" for i in range(40)]


@pytest.fixture
def counts_h5ad(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.poisson(rng.uniform(0.5, 20, size=12), size=(40, 12)).astype(np.float32)
    counts[:, 3] = 0  # a gene never detected: constant after normalisation too
    genes = [f"g{j}" for j in range(10)] + ["t1", "t2"]
    adata = anndata.AnnData(
        X=sp.csr_matrix(counts),
        obs=pd.DataFrame({"batch": ["a", "b"] * 20, "depth": rng.normal(size=40)}, index=SPOTS),
        var=pd.DataFrame(index=genes),
        obsm={"spatial": rng.uniform(size=(40, 2)), "props": rng.dirichlet(np.ones(3), size=40)},
    )
    path = tmp_path / "counts.h5ad"
    adata.write_h5ad(path)
    return path, counts, genes


def log_norm(values, totals, target_sum=1e4):
    return np.log1p(values / totals[:, None] * target_sum)


def test_holds_counts():
    assert holds_counts(np.array([[0, 1], [3, 4]], dtype=float))
    assert not holds_counts(np.array([[0.5, 1]]))
    assert not holds_counts(np.array([[-1, 1]]))
    assert holds_counts(sp.csr_matrix(np.array([[0, 2], [0, 0]])))


def test_counts_are_normalised_selected_and_standardised(counts_h5ad):
    path, counts, genes = counts_h5ad
    prep = prepare_h5ad(path, targets=["t1", "t2"], features=["g0", "g1", "g3"], covariates=["batch", "depth"])
    totals = counts.sum(axis=1).astype(np.float64)
    assert prep.info["normalized"] and prep.info["input_counts"]
    # constant gene g3 is dropped, the others standardised
    assert prep.feature_names == ["g0", "g1"] and prep.info["dropped_constant"] == ["g3"]
    expected = log_norm(counts[:, [0, 1]].astype(np.float64), totals)
    np.testing.assert_allclose(prep.X * prep.feature_scale + prep.feature_mean, expected, rtol=1e-6)
    np.testing.assert_allclose(prep.feature_mean, 0)  # scaled, not centred: zero expression stays zero
    np.testing.assert_allclose(prep.X, expected / expected.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(prep.X.std(axis=0), 1)
    np.testing.assert_allclose(prep.Y, log_norm(counts[:, [10, 11]].astype(np.float64), totals), rtol=1e-6)
    assert prep.covariate_names == ["batch=b", "depth"]


def test_all_features_excludes_targets_and_keeps_most_variable(counts_h5ad):
    path, counts, genes = counts_h5ad
    prep = prepare_h5ad(path, targets=["t1"], features="all", max_features=4)
    assert len(prep.feature_names) == 4 and "t1" not in prep.feature_names and "g3" not in prep.feature_names
    totals = counts.sum(axis=1).astype(np.float64)
    candidates = [j for j, g in enumerate(genes) if g != "t1"]  # t2 is not a target here, so a feature
    variance = log_norm(counts[:, candidates].astype(np.float64), totals).var(axis=0)
    top = sorted(np.argsort(-variance)[:4])
    assert prep.feature_names == [genes[candidates[j]] for j in top]


def test_all_features_leave_out_control_probes_and_say_so(counts_h5ad, tmp_path):
    """Imaging panels carry negative-control probes (MERFISH Blank_, Xenium NegControlProbe_, CosMx NegPrb, …): they
    measure background, so 'all genes' as candidate regulators leaves them out, in the record and in words; listed by
    name they are used. 10x's feature_types marks controls of its own files."""
    import io

    from s3r.feature_choice import control_probes

    path, counts, genes = counts_h5ad
    adata = anndata.read_h5ad(path)
    adata.var_names = ["g0", "Blank_1", "g2", "g3", "NegControlProbe_00042", "g5", "NegPrb3", "g7", "BLANK_0007", "g9", "t1", "t2"]
    adata.write_h5ad(tmp_path / "panel.h5ad")
    said = io.StringIO()
    prep = prepare_h5ad(tmp_path / "panel.h5ad", targets=["t1"], features="all", log=said)
    assert prep.feature_names == ["g0", "g2", "g5", "g7", "g9", "t2"]  # g3 (never detected) dropped as constant
    assert prep.info["control_probes_left_out"] == ["Blank_1", "NegControlProbe_00042", "NegPrb3", "BLANK_0007"]
    assert "features 'all' leaves out 4 control probes (Blank_1, NegControlProbe_00042, NegPrb3, BLANK_0007)" in said.getvalue()
    named = prepare_h5ad(tmp_path / "panel.h5ad", targets=["t1"], features=["g0", "Blank_1"], log=said)
    assert named.feature_names == ["g0", "Blank_1"] and named.info["control_probes_left_out"] == []
    adata.var["feature_types"] = ["Gene Expression"] * 11 + ["Negative Control Codeword"]
    adata.write_h5ad(tmp_path / "typed.h5ad")
    assert "t2" not in prepare_h5ad(tmp_path / "typed.h5ad", targets=["t1"], features="all", log=None).feature_names
    assert control_probes(["Blank-12", "blanket", "SystemControl5", "antisense_ACTB", "Gad1"]) == ["Blank-12", "SystemControl5", "antisense_ACTB"]


def test_obsm_features_are_not_normalised(counts_h5ad):
    path, _, _ = counts_h5ad
    prep = prepare_h5ad(path, targets=["t1"], features="obsm:props", standardize=False)
    adata = anndata.read_h5ad(path)
    np.testing.assert_allclose(prep.X, adata.obsm["props"])
    assert prep.feature_names == ["props_1", "props_2", "props_3"]


def test_normalize_false_and_forced_on_negative_values(counts_h5ad, tmp_path):
    path, counts, _ = counts_h5ad
    raw = prepare_h5ad(path, targets=["t1"], features=["g0"], normalize=False)
    np.testing.assert_allclose(raw.Y[:, 0], counts[:, 10])
    adata = anndata.read_h5ad(path)
    adata.X = adata.X.toarray() - 3.0
    adata.write_h5ad(tmp_path / "neg.h5ad")
    assert not prepare_h5ad(tmp_path / "neg.h5ad", targets=["t1"], features=["g0"]).info["normalized"]
    with pytest.raises(S3RInputError, match="not counts; set preprocess.normalize"):
        prepare_h5ad(tmp_path / "neg.h5ad", targets=["t1"], features=["g0"], normalize=True)


def test_reference_csv_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(5, 40))
    pd.DataFrame(X, index=[f"f{j}" for j in range(4)] + ["Blank-1"], columns=SPOTS).to_csv(tmp_path / "X.csv")
    pd.DataFrame(rng.normal(size=(40, 2)), index=SPOTS, columns=["a", "b"]).iloc[::-1].to_csv(tmp_path / "Y.csv")
    pd.DataFrame(rng.uniform(size=(40, 2)), index=SPOTS, columns=["row", "col"]).to_csv(tmp_path / "C.csv")
    prep = prepare_reference_csv(tmp_path / "X.csv", tmp_path / "Y.csv", tmp_path / "C.csv", targets=["b", "a"])
    assert not prep.info["normalized"] and prep.target_names == ["b", "a"]
    assert prep.feature_names == ["f0", "f1", "f2", "f3"] and prep.info["control_probes_left_out"] == ["Blank-1"]
    y = pd.read_csv(tmp_path / "Y.csv", index_col=0)
    np.testing.assert_allclose(prep.Y[:, 0], y.loc[SPOTS, "b"])
    write_prepared(tmp_path / "p.npz", prep)
    back = read_prepared(tmp_path / "p.npz")
    np.testing.assert_array_equal(back.X, prep.X)
    assert back.spot_ids == SPOTS and back.feature_names == prep.feature_names and back.info == prep.info
    data = back.regression_data("a")
    np.testing.assert_allclose(data.y, y.loc[SPOTS, "a"])
    assert data.target_name == "a" and data.covariates is None
    with pytest.raises(S3RInputError, match="was not preprocessed"):
        back.regression_data("zz")


def test_a_capped_all_on_the_csv_triplet_keeps_the_most_variable_features_in_input_order(tmp_path):
    """The CSV path and the h5ad path choose 'all' features by one rule (``feature_choice.feature_genes``): every
    column but the targets and control probes, cut to the ``max_features`` most variable, kept in the input's order."""
    rng = np.random.default_rng(4)
    sd = np.array([0.5, 3.0, 1.0, 0.0, 2.0, 4.0])  # f3 constant: never chosen
    X = rng.normal(size=(6, 40)) * sd[:, None]
    pd.DataFrame(X, index=[f"f{j}" for j in range(5)] + ["Blank-2"], columns=SPOTS).to_csv(tmp_path / "X.csv")
    pd.DataFrame(rng.normal(size=(40, 1)), index=SPOTS, columns=["a"]).to_csv(tmp_path / "Y.csv")
    pd.DataFrame(rng.uniform(size=(40, 2)), index=SPOTS, columns=["row", "col"]).to_csv(tmp_path / "C.csv")
    prep = prepare_reference_csv(tmp_path / "X.csv", tmp_path / "Y.csv", tmp_path / "C.csv", targets=["a"], max_features=2,
                                 standardize=False)
    assert prep.feature_names == ["f1", "f4"]  # Blank-2 (sd 4) is a control probe, left out before the cut
    np.testing.assert_allclose(prep.X, X[[1, 4]].T)
