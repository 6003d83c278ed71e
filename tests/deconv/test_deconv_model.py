"""The estimator end to end on simulated tissue with known truth."""

import numpy as np
import pandas as pd
import pytest
import torch

from s3r.deconv import (
    Deconvolution,
    argmax_ari,
    neighbour_agreement,
    proportions_rmse,
    simulate_deconvolution,
    validate_scores,
)
from s3r.errors import S3RInputError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def simulation():
    return simulate_deconvolution("dlpfc_151507", n_spots=800, seed=0)


@pytest.fixture(scope="module")
def fitted(simulation):
    return Deconvolution(3, lambda_smooth=10.0, tol=1e-4, seed=0).fit(simulation.scores, simulation.coords)


def test_spatial_term_beats_no_spatial_term(simulation, fitted):
    plain = Deconvolution(3, lambda_smooth=0.0, tol=1e-4, seed=0).fit(simulation.scores, simulation.coords)
    truth = simulation.proportions
    smooth_rmse, plain_rmse = proportions_rmse(fitted.proportions_, truth), proportions_rmse(plain.proportions_, truth)
    smooth_ari, plain_ari = argmax_ari(fitted.mixture_, simulation.regions), argmax_ari(plain.mixture_, simulation.regions)
    assert smooth_rmse < 0.5 * plain_rmse
    assert smooth_ari > plain_ari + 0.3
    edges = fitted.graph_.edges
    assert neighbour_agreement(fitted.mixture_.argmax(1), edges) > neighbour_agreement(plain.mixture_.argmax(1), edges)


def test_fitted_state_respects_the_constraints(simulation, fitted):
    n, K = simulation.scores.shape
    eps = fitted.eps
    assert fitted.mixture_.shape == (n, 3) and fitted.dictionary_.shape == (K, 3)
    assert fitted.mixture_.min() >= eps - 1e-12 and fitted.dictionary_.min() >= eps - 1e-12
    np.testing.assert_allclose(fitted.mixture_.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(fitted.dictionary_.sum(axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(fitted.proportions_, fitted.mixture_ @ fitted.dictionary_.T)
    # learned weights are stored in the caller's edge order: every spot keeps weight ≥ 1 ("at_least"), tight
    # at most spots (an edge-order mix-up breaks the bound)
    node_sums = abs(fitted.graph_.incidence()).T @ fitted.edge_weights_
    assert node_sums.min() >= 1.0 - 1e-8 and np.median(node_sums) == pytest.approx(1.0)
    assert fitted.edge_weights_.min() >= fitted.w_min - 1e-12 and fitted.edge_weights_.max() <= fitted.w_max + 1e-12


def test_objective_trace_descends_and_report_is_complete(fitted):
    trace = np.asarray(fitted.objective_trace_)
    assert len(trace) == fitted.n_iter_ + 1
    assert np.all(np.diff(trace) <= 1e-9 * np.abs(trace[1:]))
    report = fitted.report_
    for key in ("objective", "iterations", "converged", "seconds", "feasibility", "steps", "device", "dtype", "stop_reason"):
        assert key in report
    assert report["converged"] and report["device"] == "cpu" and report["dtype"] == "float64"
    assert report["feasibility"]["feasible"] and report["feasibility"]["max_degree"] >= 3
    assert any(step["weights_changed"] for step in report["steps"])


def test_same_seed_same_result_whatever_the_score_scale_or_container(simulation):
    short = dict(lambda_smooth=10.0, seed=3, max_iter=4)
    first = Deconvolution(3, **short).fit(simulation.scores, simulation.coords)
    again = Deconvolution(3, **short).fit(simulation.scores, simulation.coords)
    np.testing.assert_array_equal(again.mixture_, first.mixture_)
    np.testing.assert_array_equal(again.edge_weights_, first.edge_weights_)
    frame = pd.DataFrame(simulation.scores * 7.5, index=simulation.spot_ids, columns=simulation.cell_types)
    scaled = Deconvolution(3, **short).fit(frame, simulation.coords)
    assert scaled.cell_types_ == simulation.cell_types and scaled.spot_names_ == simulation.spot_ids
    np.testing.assert_allclose(scaled.proportions_, first.proportions_, atol=1e-8)


def test_float32_soft_l1_and_fixed_weights_run(simulation):
    model = Deconvolution(3, dtype="float32", penalty="soft_l1", delta=1e-4, learn_weights=False, max_iter=3)
    model.fit(simulation.scores, simulation.coords)
    assert model.report_["dtype"] == "float32" and not model.report_["learn_weights"]
    assert np.isfinite(model.objective_trace_).all() and model.n_iter_ == 3
    np.testing.assert_allclose(model.mixture_.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(simulation, fitted):
    model = Deconvolution(3, lambda_smooth=10.0, seed=0, device="cuda").fit(simulation.scores, simulation.coords)
    assert model.report_["device"].startswith("cuda")
    assert proportions_rmse(model.proportions_, fitted.proportions_) < 1e-3


@pytest.mark.parametrize(
    "scores, message",
    [
        (np.log(np.full((5, 3), 0.3)), "look like log-likelihoods"),
        (np.array([[1.0, 0.0], [0.0, 0.0], [0.5, 0.5]]), "spot 1 score 0 for every cell type"),
        (np.array([[1.0, np.nan], [0.2, 0.5]]), "spot 0 have NaN"),
        (np.ones((4, 1)), "at least 2"),
    ],
)
def test_bad_scores_are_named(scores, message):
    with pytest.raises(S3RInputError, match=message):
        validate_scores(scores)


def test_bad_parameters_say_what_to_change(simulation):
    with pytest.raises(S3RInputError, match="lower --eps"):
        Deconvolution(3, eps=0.4).fit(simulation.scores, simulation.coords)
    with pytest.raises(S3RInputError, match="exceeds the 3 spots"):
        Deconvolution(4).fit(simulation.scores[:3], simulation.coords[:3])
    with pytest.raises(S3RInputError, match="coordinates are required"):
        Deconvolution(2).fit(simulation.scores)
    with pytest.raises(S3RInputError, match="lambda must be ≥ 0"):
        Deconvolution(2, lambda_smooth=-1).fit(simulation.scores, simulation.coords)
