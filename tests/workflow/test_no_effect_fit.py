"""A target whose tuning found no effect: its final fit is the intercept-only model (every coefficient zero, certified
without a solve) unless tune.no_effect asks for the chosen trial; its report says so in words and draws no domains."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s3r import S3R
from s3r.artifacts import write_params
from s3r.fit_targets import intercept_only
from s3r.graph import build_graph
from s3r.preprocess import PreparedSample
from s3r.report.fit_report import fit_report
from s3r.workflow.tuning import fit_chunk

PARAMS = {"lambda_smooth": 1e-3, "alpha": 1e-3, "beta": 1e-3, "tol": 1e-5}


def _sample(seed=0, n=300, p=20):
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    X = rng.normal(size=(n, p))
    signal = X[:, 0] * np.where(coords[:, 0] < 0.5, 1.0, -1.0)
    Y = np.stack([signal + 0.3 * rng.normal(size=n) + 2.0, rng.normal(size=n) + 5.0], axis=1)  # "effect", "noise"
    return PreparedSample(X=X, Y=Y, coords=coords, spot_ids=[f"s{i}" for i in range(n)],
                          feature_names=[f"f{j}" for j in range(p)], target_names=["effect", "noise"])


def test_intercept_only_raises_alpha_exactly_to_where_every_coefficient_is_zero():
    prepared = _sample()
    data = prepared.regression_data("effect")
    base = S3R(lambda_smooth=1e-8, alpha=1e-3, beta=0.0, dtype="float64", tol=1e-7)
    null = intercept_only(base, data.X, data.y, data.coords).fit(data.X, data.y, data.coords)
    assert not np.any(null.coef_) and null.report_["iterations"] == 0
    assert null.intercept_ == pytest.approx(data.y.mean(), rel=1e-9)  # the intercept-only model predicts the mean
    # the smallest such α (at λ ≈ 0): a little below it a coefficient comes back
    below = S3R(**{**null.get_params(), "alpha": null.alpha * 0.9}).fit(data.X, data.y, data.coords)
    assert np.any(below.coef_)


@pytest.mark.parametrize("no_effect", ["intercept_only", "chosen_trial"])
def test_a_no_effect_target_is_fitted_as_the_intercept_only_model_unless_asked_otherwise(tmp_path, no_effect):
    prepared = _sample()
    graph = build_graph(prepared.coords, "knn", k=6)
    verdicts = {"effect": True, "noise": False}
    for target, found in verdicts.items():
        write_params(tmp_path / "params" / target / "best_params.json", PARAMS, source="tune", sample="s", target=target,
                     tuning={"trial": 3, "effect_found": found, "verdict": "effect found" if found else "no spatially varying effect of the features found",
                             "null_cv_loss": 1.0, "cv_loss": 0.5 if found else 1.01})
    fit_chunk(prepared, graph, ["effect", "noise"], tmp_path / "params", tmp_path / "fits", sample="s", device="cpu", inputs={},
              no_effect=no_effect)
    fits = {t: json.loads((tmp_path / "fits" / t / "fit.json").read_text()) for t in verdicts}
    W = {t: np.load(tmp_path / "fits" / t / "coefficients.npz")["coef"] for t in verdicts}
    assert np.any(W["effect"]) and fits["effect"]["extra"]["final_model"] == "trial 3 as chosen"
    if no_effect == "intercept_only":
        assert not np.any(W["noise"])
        assert fits["noise"]["extra"]["final_model"].startswith("intercept-only: no effect found")
        from s3r.anndata_out import anndata_from_prepared, attach_fit

        adata = anndata_from_prepared(prepared.X, prepared.feature_names, prepared.spot_ids, prepared.coords)
        attach_fit(adata, fit_dir=tmp_path / "fits" / "noise")  # the h5ad says what the zeros are
        assert adata.uns["s3r"]["noise"]["final_model"].startswith("intercept-only") and not adata.uns["s3r"]["noise"]["selected_features"].size
    else:
        assert np.any(W["noise"])  # λ, α, β near zero: the chosen trial fits the noise
        assert fits["noise"]["extra"]["final_model"] == "trial 3 as chosen"
    assert fits["noise"]["extra"]["effect_found"] is False

    out = fit_report(tmp_path / "fits" / "noise", tmp_path / "report", vector=None)
    if no_effect == "intercept_only":  # nothing varies over the tissue: no domains, no heatmap, the verdict in words
        assert "heatmap" not in out and "domains" not in out and not (tmp_path / "report" / "heatmap.png").exists()
    else:
        assert "heatmap" in out
    assert out["coefficient_maps"].is_file() and not list((tmp_path / "report").glob("*.svg"))


def test_an_unknown_no_effect_setting_is_one_line(tmp_path):
    from s3r.errors import S3RInputError

    with pytest.raises(S3RInputError, match=r"no_effect \(the workflow's tune.no_effect, s3r fit --no-effect\) must be one of intercept_only, "
                                         r"chosen_trial; got 'zero'"):
        fit_chunk(_sample(), None, ["effect"], tmp_path, tmp_path, sample="s", device="cpu", inputs={}, no_effect="zero")
