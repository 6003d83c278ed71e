"""Readers accept the reference layout as is and turn bad input into one actionable line; writers are atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from s3r.errors import S3RInputError
from s3r.io import (
    RegressionData,
    atomic_write,
    read_h5ad,
    read_reference_csv,
    write_csv,
    write_json,
    write_npz,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "s3r-example"


# ---------------------------------------------------------------------------------------------------------
# reference CSV layout
# ---------------------------------------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def csvs(tmp_path):
    """A small valid triple in the reference layout; spots in Y and C deliberately in another order."""
    x = _write(tmp_path / "X.csv", ",s1,s2,s3\nf1,0.1,0.2,0.3\nf2,1,2,3\n")
    y = _write(tmp_path / "Y.csv", ",target\ns3,30\ns1,10\ns2,20\n")
    c = _write(tmp_path / "C.csv", ",row,col\ns2,2,20\ns3,3,30\ns1,1,10\n")
    return x, y, c


def test_reads_and_aligns(csvs):
    data = read_reference_csv(*csvs)
    assert isinstance(data, RegressionData)
    assert data.spot_ids == ["s1", "s2", "s3"] and data.feature_names == ["f1", "f2"]
    assert np.array_equal(data.X, [[0.1, 1], [0.2, 2], [0.3, 3]])
    assert np.array_equal(data.y, [10, 20, 30])
    assert np.array_equal(data.coords, [[1, 10], [2, 20], [3, 30]])
    assert data.target_name == "target" and data.covariates is None and data.covariate_names == []


def test_xy_coordinate_columns_and_target_choice(tmp_path, csvs):
    x, _, _ = csvs
    c = _write(tmp_path / "xy.csv", ",x,y\ns1,1,10\ns2,2,20\ns3,3,30\n")
    y = _write(tmp_path / "Y2.csv", ",a,b\ns1,1,5\ns2,2,6\ns3,3,7\n")
    data = read_reference_csv(x, y, c, target="b")
    assert np.array_equal(data.y, [5, 6, 7]) and data.target_name == "b"
    assert np.array_equal(data.coords[:, 1], [10, 20, 30])
    with pytest.raises(S3RInputError, match=r"Y2\.csv.*2 columns.*--target-column on the command line, target= in Python"):
        read_reference_csv(x, y, c)
    with pytest.raises(S3RInputError, match=r"Y2\.csv.*'bb'.*'b'"):
        read_reference_csv(x, y, c, target="bb")


@pytest.mark.skipif(not EXAMPLE.is_dir(), reason="shared example data not present")
def test_reads_reference_example():
    data = read_reference_csv(EXAMPLE / "X_exp.csv", EXAMPLE / "Y_exp.csv", EXAMPLE / "C_exp.csv")
    assert data.X.shape == (1000, 100) and data.y.shape == (1000,) and data.coords.shape == (1000, 2)
    assert data.spot_ids[:2] == ["sample_1", "sample_2"] and data.feature_names[0] == "feature_1"
    assert data.X[0, 0] == 0.1716592873507559 and data.y[0] == -114.84443910325965
    assert 100 < data.y.std() < 115


BAD_X = [
    # (content, fragments the message must contain)
    (",s1,s2,s3\nf1,0.1,abc,0.3\nf2,1,2,3\n", ["X.csv", "'abc'", "'f1'", "'s2'"]),
    (",s1,s2,s3\nf1,0.1,0.2,0.3\nf2,1,,3\n", ["X.csv", "NaN", "'f2'", "'s2'"]),
    (",s1,s2,s3\nf1,0.1,0.2,0.3\nf2,1,2,inf\n", ["X.csv", "infinite", "'f2'", "'s3'"]),
    (",s1,s1,s3\nf1,0.1,0.2,0.3\nf2,1,2,3\n", ["X.csv", "duplicated spot", "'s1'"]),
    (",s1,s2,s3\nf1,0.1,0.2,0.3\nf1,1,2,3\n", ["X.csv", "duplicated feature", "'f1'"]),
    (",s1,s2,s3\n", ["X.csv", "no data rows"]),
    ("", ["X.csv", "empty"]),
    (",s1,s2,s3,s4,s5\nf1,0.1,0.2,0.3\n", ["X.csv", "header", "fields"]),
    (",s1,s2,s3\n,0.1,0.2,0.3\n", ["X.csv", "row 1", "no feature id"]),
]


@pytest.mark.parametrize("content, fragments", BAD_X)
def test_bad_x(csvs, content, fragments):
    x, y, c = csvs
    x.write_text(content)
    with pytest.raises(S3RInputError) as err:
        read_reference_csv(x, y, c)
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg


def test_bad_y_and_coords(csvs):
    x, y, c = csvs
    y.write_text(",target\ns1,10\ns2,oops\ns3,30\n")
    with pytest.raises(S3RInputError, match=r"Y\.csv.*'oops'.*row 's2'.*column 'target'"):
        read_reference_csv(x, y, c)
    y.write_text(",target\ns1,10\ns2,20\ns2,30\n")
    with pytest.raises(S3RInputError, match=r"Y\.csv.*duplicated spot.*'s2'"):
        read_reference_csv(x, y, c)
    y.write_text(",target\ns1,10\ns2,20\ns3,30\n")
    c.write_text(",u,v\ns1,1,10\ns2,2,20\ns3,3,30\n")
    with pytest.raises(S3RInputError, match=r"C\.csv.*'row','col'.*'u'"):
        read_reference_csv(x, y, c)
    c.write_text(",row,col\ns1,1,10\ns2,2,NA\ns3,3,30\n")
    with pytest.raises(S3RInputError, match=r"C\.csv.*NaN.*row 's2'.*column 'col'"):
        read_reference_csv(x, y, c)


def test_missing_file(csvs, tmp_path):
    x, y, _ = csvs
    with pytest.raises(S3RInputError, match=r"nope\.csv.*not found"):
        read_reference_csv(x, y, tmp_path / "nope.csv")
    with pytest.raises(S3RInputError, match="not a file"):
        read_reference_csv(tmp_path, y, x)


def test_spot_mismatch(csvs):
    x, y, c = csvs
    y.write_text(",target\n" + "".join(f"s{i},{i}\n" for i in range(1, 3)) + "zz,9\n")
    with pytest.raises(S3RInputError) as err:
        read_reference_csv(x, y, c)
    msg = str(err.value)
    assert "Y.csv lacks 1 spot(s) present in" in msg and "'s3'" in msg
    assert "lacks 1 spot(s) present in" in msg and "'zz'" in msg and "X.csv" in msg
    x.write_text(",s1,s2,s3,s4,s5,s6\nf1,1,2,3,4,5,6\n")
    y.write_text(",target\ns1,1\ns2,2\n")
    with pytest.raises(S3RInputError, match=r"Y\.csv lacks 4 spot\(s\) present in .*X\.csv \('s3', 's4', 's5', \.\.\.\)"):
        read_reference_csv(x, y, c)


def test_csv_float_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 4)) * 10.0 ** rng.integers(-12, 12, size=(7, 4))
    spots = [f"c{i}" for i in range(7)]
    write_csv(pd.DataFrame(X.T, index=[f"g{j}" for j in range(4)], columns=spots), tmp_path / "X.csv")
    write_csv(pd.DataFrame({"t": X[:, 0]}, index=spots), tmp_path / "Y.csv")
    write_csv(pd.DataFrame({"row": X[:, 1], "col": X[:, 2]}, index=spots), tmp_path / "C.csv")
    data = read_reference_csv(tmp_path / "X.csv", tmp_path / "Y.csv", tmp_path / "C.csv")
    assert np.array_equal(data.X, X) and np.array_equal(data.y, X[:, 0])


def test_numeric_spot_ids_stay_strings(tmp_path):
    x = _write(tmp_path / "X.csv", ",7880,7881\nf1,1,2\n")
    y = _write(tmp_path / "Y.csv", ",target\n7881,2\n7880,1\n")
    c = _write(tmp_path / "C.csv", "cell_id,x,y\n7880,0,0\n7881,1,1\n")
    data = read_reference_csv(x, y, c)
    assert data.spot_ids == ["7880", "7881"] and np.array_equal(data.y, [1, 2])


# ---------------------------------------------------------------------------------------------------------
# AnnData
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def h5ad(tmp_path):
    rng = np.random.default_rng(1)
    n, genes = 30, ["Actb", "Gapdh", "Cd74", "Ptprc", "Epcam"]
    counts = rng.poisson(2.0, size=(n, len(genes))).astype(np.float32)
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(rng.choice(["a", "b", "c"], n)),
            "library_size": rng.uniform(1e3, 1e4, n),
        },
        index=[f"cell{i}" for i in range(n)],
    )
    props = pd.DataFrame(rng.dirichlet(np.ones(3), n), index=obs.index, columns=["T", "B", "Tumour"])
    ad = anndata.AnnData(
        X=sp.csr_matrix(counts),
        obs=obs,
        var=pd.DataFrame(index=genes),
        layers={"lognorm": np.log1p(counts)},
        obsm={"spatial": rng.uniform(0, 100, (n, 2)), "proportions": props, "X_pca": rng.standard_normal((n, 4))},
    )
    path = tmp_path / "data.h5ad"
    ad.write_h5ad(path)
    return path, counts, props, ad


def test_h5ad_genes(h5ad):
    path, counts, _, ad = h5ad
    data = read_h5ad(path, target="Epcam", features=["Actb", "Cd74"])
    assert np.array_equal(data.y, counts[:, 4]) and np.array_equal(data.X, counts[:, [0, 2]])
    assert data.X.dtype == np.float64 and data.feature_names == ["Actb", "Cd74"]
    assert np.array_equal(data.coords, ad.obsm["spatial"]) and data.spot_ids == list(ad.obs_names)
    logged = read_h5ad(path, target="Epcam", features=["Actb"], layer="lognorm")
    assert np.allclose(logged.y, np.log1p(counts[:, 4]))


def test_h5ad_obsm_features_and_covariates(h5ad):
    path, counts, props, ad = h5ad
    data = read_h5ad(path, target="Ptprc", features="proportions", covariates=["library_size", "batch"])
    assert data.feature_names == ["T", "B", "Tumour"] and np.array_equal(data.X, props.to_numpy())
    assert data.covariate_names == ["library_size", "batch=b", "batch=c"]
    assert np.array_equal(data.covariates[:, 0], ad.obs.library_size.to_numpy())
    assert np.array_equal(data.covariates[:, 1], (ad.obs.batch == "b").to_numpy().astype(float))
    pca = read_h5ad(path, target="Ptprc", features="X_pca")
    assert pca.feature_names == ["X_pca_1", "X_pca_2", "X_pca_3", "X_pca_4"]
    assert np.array_equal(pca.X, ad.obsm["X_pca"])


@pytest.mark.parametrize(
    "kwargs, fragments",
    [
        (dict(target="Epcam", features=["Actb", "Cd47"]), ["data.h5ad", "'Cd47'", "'Cd74'"]),
        (dict(target="Epcm", features=["Actb"]), ["data.h5ad", "'Epcm'", "'Epcam'"]),
        (dict(target="Epcam", features="proportion"), ["data.h5ad", "'proportion'", "'proportions'"]),
        (dict(target="Epcam", features=["Actb"], spatial_key="coords"), ["data.h5ad", "'coords'", "--spatial-key on the command line, spatial_key= in Python"]),
        (dict(target="Epcam", features=["Actb"], covariates=["batchh"]), ["data.h5ad", "'batchh'", "'batch'"]),
        (dict(target="Epcam", features=["Actb"], layer="counts"), ["data.h5ad", "'counts'", "lognorm"]),
        (dict(target="Epcam", features=["Actb", "Epcam"]), ["data.h5ad", "also listed as a feature"]),
    ],
)
def test_h5ad_errors(h5ad, kwargs, fragments):
    path = h5ad[0]
    with pytest.raises(S3RInputError) as err:
        read_h5ad(path, **kwargs)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_h5ad_missing_and_nan(tmp_path, h5ad):
    with pytest.raises(S3RInputError, match=r"none\.h5ad.*not found"):
        read_h5ad(tmp_path / "none.h5ad", target="a", features=["b"])
    bad = _write(tmp_path / "bad.h5ad", "not hdf5")
    with pytest.raises(S3RInputError, match=r"bad\.h5ad.*cannot read"):
        read_h5ad(bad, target="a", features=["b"])
    ad = h5ad[3].copy()
    ad.obsm["spatial"][3, 1] = np.nan
    ad.write_h5ad(tmp_path / "nan.h5ad")
    with pytest.raises(S3RInputError, match=r"nan\.h5ad.*'cell3'"):
        read_h5ad(tmp_path / "nan.h5ad", target="Epcam", features=["Actb"])


# ---------------------------------------------------------------------------------------------------------
# atomic writers
# ---------------------------------------------------------------------------------------------------------


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("new but partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_write(target) as fh:
        fh.write("new")
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_write_json_npz_csv(tmp_path):
    obj = {"z": np.int64(3), "a": np.float32(0.5), "arr": np.arange(3), "nan": float("nan"), "ok": np.bool_(True)}
    write_json(obj, tmp_path / "sub" / "fit.json")
    text = (tmp_path / "sub" / "fit.json").read_text()
    assert json.loads(text) == {"z": 3, "a": 0.5, "arr": [0, 1, 2], "nan": None, "ok": True}
    assert list(json.loads(text)) == ["z", "a", "arr", "nan", "ok"] and text.startswith('{\n  "z"')

    W = np.random.default_rng(0).standard_normal((4, 3))
    write_npz(tmp_path / "w.npz", W=W, names=np.array(["a", "b", "c"]))
    with np.load(tmp_path / "w.npz") as z:
        assert np.array_equal(z["W"], W) and list(z["names"]) == ["a", "b", "c"]

    df = pd.DataFrame(W, columns=["a", "b", "c"])
    write_csv(df, tmp_path / "w.csv")
    assert np.array_equal(pd.read_csv(tmp_path / "w.csv", index_col=0, float_precision="round_trip").to_numpy(), W)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub", "w.csv", "w.npz"]


def test_npz_at_a_chosen_deflate_level_reads_back_exactly(tmp_path):
    """``write_npz(compresslevel=1)`` (the fold states) writes what np.load reads: the same names, dtypes and values."""
    from s3r.io import write_npz

    rng = np.random.default_rng(0)
    arrays = {"t0.W": rng.standard_normal((50, 4, 3)).astype(np.float32), "t0.step": np.arange(4.0), "t1.numbers": np.arange(7)}
    write_npz(tmp_path / "fast.npz", compresslevel=1, **arrays)
    write_npz(tmp_path / "default.npz", **arrays)
    for name in ("fast.npz", "default.npz"):
        with np.load(tmp_path / name, allow_pickle=False) as got:
            assert sorted(got.files) == sorted(arrays)
            for key, value in arrays.items():
                assert got[key].dtype == value.dtype and np.array_equal(got[key], value)
    zeros = {"z": np.zeros((200, 200))}
    write_npz(tmp_path / "zeros.npz", compresslevel=1, **zeros)
    assert (tmp_path / "zeros.npz").stat().st_size < 0.05 * zeros["z"].nbytes  # deflated, not stored
    write_npz(tmp_path / "stored.npz", compresslevel=0, **arrays, **zeros)  # level 0: stored as they are
    with np.load(tmp_path / "stored.npz", allow_pickle=False) as got:
        assert all(got[key].dtype == value.dtype and np.array_equal(got[key], value) for key, value in {**arrays, **zeros}.items())
    assert (tmp_path / "stored.npz").stat().st_size > zeros["z"].nbytes
