"""The counts policy: which preprocessing each family gets, and what fit.json says was done."""

from __future__ import annotations

import numpy as np
import pytest

from s3r.counts import describe, prepare_kwargs
from s3r.errors import S3RInputError
from s3r.preprocess import prepare_h5ad


def test_policy_per_family_and_switch():
    assert prepare_kwargs("gaussian") == {"normalize": "auto", "raw_targets": False, "offset": None}
    assert prepare_kwargs("poisson") == {"normalize": "auto", "raw_targets": True, "offset": "auto"}
    assert prepare_kwargs("negative_binomial", "auto", "depth") == {"normalize": "auto", "raw_targets": True, "offset": "depth"}
    assert prepare_kwargs("poisson", "off") == {"normalize": False, "raw_targets": True, "offset": None}
    assert prepare_kwargs("gaussian", False) == {"normalize": False, "raw_targets": False, "offset": None}
    assert prepare_kwargs("gaussian", True)["normalize"] is True  # the workflow's 'normalize: true'
    with pytest.raises(S3RInputError, match="normalisation must be 'auto' or 'off', not 'maybe'"):
        prepare_kwargs("gaussian", "maybe")


@pytest.fixture
def counts_adata():
    import anndata

    rng = np.random.default_rng(0)
    counts = rng.poisson(4.0, size=(30, 5)).astype(np.float32)
    counts[:, 0] += 1
    return anndata.AnnData(X=counts, obsm={"spatial": rng.uniform(size=(30, 2))},
                           var={"name": ["a", "b", "c", "d", "t"]}).copy(), counts.astype(np.float64)


def test_offset_auto_is_log_library_size_only_for_normalised_counts(counts_adata):
    adata, counts = counts_adata
    adata.var_names = ["a", "b", "c", "d", "t"]
    prep = prepare_h5ad(adata, targets=["t"], features=["a", "b"], **prepare_kwargs("poisson"))
    np.testing.assert_allclose(prep.offset, np.log(counts.sum(axis=1)), rtol=1e-12)
    np.testing.assert_array_equal(prep.Y[:, 0], counts[:, 4])
    assert describe(prep.info) == {
        "counts_detected": True, "policy": "auto",
        "features": "library-size normalised to 10000 per spot, then log1p, scaled to unit variance (not centred)",
        "target": "raw counts (count family)", "offset": "log library size (log of each spot's total counts)", "target_sum": 10000.0,
    }
    off = prepare_h5ad(adata, targets=["t"], features=["a", "b"], **prepare_kwargs("poisson", "off"))
    assert off.offset is None and describe(off.info)["policy"] == "off" and describe(off.info)["target"] == "as stored"
    adata.X = adata.X + 0.5  # not counts: nothing is transformed and no offset is invented
    cont = prepare_h5ad(adata, targets=["t"], features=["a", "b"], **prepare_kwargs("poisson"))
    assert cont.offset is None and describe(cont.info)["counts_detected"] is False and describe(cont.info)["policy"] == "auto"
