"""S3R on single cells of a real section: MERFISH mouse preoptic hypothalamus (Moffitt et al. 2018), plane z = 0.26,
5,584 cells, volume-normalised expression (not counts), through ``s3r tune`` and ``s3r fit`` with their defaults.

Known biology: Mbp (myelin) sits in the mature oligodendrocytes, which crowd a myelinated tract across the section
(the anterior commissure's band); the oligodendrocyte regulator Sox8 and the mature-oligodendrocyte markers Gjc3,
Opalin and Ndrg1 explain it there, and an inhibitory-neuron marker (Gad1) does not (session 34: effect found, CV loss
0.106 against the intercept-only model's 0.426; in the tract the coefficients of Sox8, Gjc3, Ndrg1 are 2.1–2.6× and
Opalin's 1.4× their level elsewhere; Gad1 unselected)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "hypothalamus_merfish.h5ad"
FEATURES = "Sox8,Ermn,Opalin,Gjc3,Pdgfra,Sox6,Ndrg1,Plin3,Sgk1,Aqp4,Gad1,Ttyh2"

pytestmark = [pytest.mark.skipif(not REAL.is_file(), reason="real data (../shared/data/real) not available"),
              pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    import anndata

    adata = anndata.read_h5ad(REAL)
    one = adata[adata.obs["z"] == 0.26].copy()
    path = tmp_path_factory.mktemp("merfish") / "plane_026.h5ad"
    one.write_h5ad(path)
    return path, one


def test_mbp_is_explained_by_oligodendrocyte_markers_most_in_the_myelinated_tract(plane, tmp_path):
    from scipy.spatial import cKDTree

    from s3r.cli import main

    path, adata = plane
    data = ["--h5ad", str(path), "--target", "Mbp", "--features", FEATURES]
    assert main(["tune", *data, "--out", str(tmp_path / "tune"), "--quiet", "--workers", "1"]) == 0
    best = json.loads((tmp_path / "tune" / "best_params.json").read_text())
    tuning = best.get("tuning", best)
    assert tuning["effect_found"] is True, tuning["verdict"]
    assert tuning["cv_loss"] <= 0.5 * tuning["null_cv_loss"]
    assert main(["fit", *data, "--params", str(tmp_path / "tune" / "best_params.json"), "--out", str(tmp_path / "fit")]) == 0
    report = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert report["converged"] and report["normalisation"]["counts_detected"] is False  # kept as stored, not log-normalised
    with np.load(tmp_path / "fit" / "coefficients.npz") as f:
        W, names = f["coef"], list(f["feature_names"])
    # the tract: cells whose 30 nearest neighbours are mostly mature oligodendrocytes (the authors' cell classes)
    xy = adata.obsm["spatial"]
    mature = adata.obs["Cell_class"].astype(str).str.startswith("OD Mature").to_numpy()
    tract = mature[cKDTree(xy).query(xy, k=30)[1]].mean(axis=1) > 0.5
    assert 300 < tract.sum() < 1500
    level = {g: (W[tract, names.index(g)].mean(), W[~tract, names.index(g)].mean()) for g in names}
    for marker in ("Sox8", "Gjc3", "Ndrg1"):
        inside, outside = level[marker]
        assert inside > 1.5 * outside > 0, (marker, level[marker])
    assert level["Opalin"][0] > 1.15 * level["Opalin"][1] > 0
    assert not np.any(W[:, names.index("Gad1")]), "an inhibitory-neuron marker should not explain myelin"
