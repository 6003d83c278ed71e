"""The final fit's rounds: the dual carried across a weight change, loose V-steps before the last one."""

import numpy as np
import pytest
import torch

import s3r.deconv.proportions as proportions_module
from s3r.deconv import reweight
from s3r.deconv.counts import CountTerm, profiles_from_reference
from s3r.deconv.operators import Incidence
from s3r.deconv.proportions import CellTypeProportions
from s3r.deconv.pstep import solve_proportions
from s3r.deconv.simulate import simulate_counts
from s3r.deconv.wstep import uniform_weights
from s3r.graph import delaunay_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sim():
    return simulate_counts(n_spots=400, n_types=6, n_genes=60, n_regions=4, depth=300.0, platform_sd=0.2,
                           theta=20.0, seed=5)


def test_transfer_keeps_bound_edges_at_their_bound_and_stays_in_the_box():
    old, new = torch.tensor([0.5, 0.2, 1.0]), torch.tensor([0.1, 0.4, 1.0])
    dual = torch.tensor([[0.5, -0.1, 0.3], [-0.5, 0.2, -1.0]])
    moved = reweight.transfer_dual(dual, old, new)
    assert torch.allclose(moved[:, 0], torch.tensor([0.1, -0.1]))  # at ±bound before → at ±bound after
    assert torch.allclose(moved[:, 1], torch.tensor([-0.2, 0.4]))
    assert bool((moved.abs() <= new + 1e-7).all())


def test_a_carried_dual_reaches_the_cold_dual_optimum_in_fewer_iterations(sim):
    """A weight change of the smoothed rule at λ = 0.5: the V-step from the carried dual ends at the optimum
    the V-step from a zero dual reaches (same objective and fractions to the tolerance), in fewer iterations."""
    n, lam = sim.counts.shape[0], 0.5
    profiles, _ = profiles_from_reference(sim.reference, np.ones(sim.counts.shape[1]), 1e-4)
    term = CountTerm(torch.tensor(sim.counts.T.copy()), torch.tensor(profiles),
                     scale=float(np.median(sim.counts.sum(axis=1))))
    edges = delaunay_graph(sim.coords).edges
    incidence = Incidence(n, edges, profiles.shape[0], torch.device("cpu"), torch.float64)
    uniform = torch.as_tensor(uniform_weights(edges, n))
    start = torch.full((profiles.shape[0], n), 1.0 / profiles.shape[0], dtype=torch.float64)
    first = solve_proportions(term, start, incidence, lam * uniform, tol=1e-4, max_iter=5000)
    weights = reweight.smoothed_jump_weights(first.fractions, incidence,
                                             reweight.neighbourhood_mean(incidence.node_edge_matrix()), uniform)
    common = dict(sigma=first.sigma, tol=1e-6, max_iter=20000)
    cold = solve_proportions(term, first.fractions, incidence, lam * weights, dual=None, **common)
    warm = solve_proportions(term, first.fractions, incidence, lam * weights,
                             dual=reweight.transfer_dual(first.dual, uniform, weights), **common)
    assert cold.converged and warm.converged
    assert warm.objective == pytest.approx(cold.objective, rel=1e-5)
    assert float((warm.fractions - cold.fractions).abs().max()) < 1e-3
    assert warm.iterations < cold.iterations, (warm.iterations, cold.iterations)


def _logged(monkeypatch) -> list:
    calls = []
    solve = proportions_module.solve_proportions

    def logged(term, start, incidence, costs, **kw):
        result = solve(term, start, incidence, costs, **kw)
        calls.append((kw["tol"], result))
        return result

    monkeypatch.setattr(proportions_module, "solve_proportions", logged)
    return calls


def test_early_rounds_are_loose_and_the_last_meets_the_tolerance(sim, monkeypatch):
    calls = _logged(monkeypatch)
    model = CellTypeProportions(lambda_smooth=0.2, dtype="float64", tol=1e-5).fit(sim.counts, sim.reference, sim.coords)
    coupled = [tol for tol, _ in calls[1:]]  # after the per-spot fit
    assert coupled == [1e-5 * reweight.EARLY_TOL_FACTOR] * (len(coupled) - 1) + [1e-5]
    assert len(coupled) == model.report_["outer_iterations"] == model.report_["weight_changes"] + 1
    certificate = model.certificate_
    assert certificate["converged"] and max(certificate["primal_residual"], certificate["dual_residual"],
                                            certificate["relative_gap"]) <= 1e-5
    # the same fit with every round tight: the same proportions up to what a 10× looser first round moves
    monkeypatch.setattr(reweight, "EARLY_TOL_FACTOR", 1.0)
    tight = CellTypeProportions(lambda_smooth=0.2, dtype="float64", tol=1e-5).fit(sim.counts, sim.reference, sim.coords)
    assert np.abs(model.proportions_ - tight.proportions_).max() < 5e-3
    assert np.abs(model.proportions_ - sim.proportions).mean() == pytest.approx(
        np.abs(tight.proportions_ - sim.proportions).mean(), rel=0.02)


def test_weights_that_settle_after_a_loose_round_get_a_tight_finish(sim, monkeypatch):
    calls = _logged(monkeypatch)
    monkeypatch.setattr(reweight, "weights_settled", lambda new, old: True)
    model = CellTypeProportions(lambda_smooth=0.2, dtype="float64", tol=1e-5).fit(sim.counts, sim.reference, sim.coords)
    assert [tol for tol, _ in calls[1:]] == [1e-4, 1e-5]
    assert model.report_["weight_changes"] == 0 and model.certificate_["converged"]
    assert model.certificate_["primal_residual"] <= 1e-5 and model.certificate_["relative_gap"] <= 1e-5


def test_the_neighbourhood_mean_is_built_once_per_graph(sim):
    model = CellTypeProportions()
    edges = delaunay_graph(sim.coords).edges
    one = Incidence(len(sim.coords), edges, 3, torch.device("cpu"), torch.float64).node_edge_matrix()
    other = Incidence(len(sim.coords), edges[:-5], 3, torch.device("cpu"), torch.float64).node_edge_matrix()
    assert model._smoother(one) is model._smoother(one)
    assert model._smoother(other) is not model._smoother(one)
    assert model._smoother(other).shape == (len(sim.coords), len(sim.coords))
