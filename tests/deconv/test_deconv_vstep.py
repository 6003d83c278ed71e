"""The proportions V-step's dual step: its first σ from the start's jumps, rebalanced against the gap."""

import numpy as np
import pytest
import torch

import s3r.deconv.pstep as pstep
from s3r.deconv.condat_vu import default_dual_step, jump_dual_step
from s3r.deconv.counts import CountTerm, profiles_from_reference
from s3r.deconv.operators import Incidence
from s3r.deconv.pstep import solve_proportions
from s3r.deconv.simulate import simulate_counts
from s3r.deconv.wstep import uniform_weights
from s3r.graph import delaunay_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_jump_dual_step_crosses_the_box_in_one_typical_jump():
    costs = torch.tensor([0.2, 0.2, 0.4, 0.2])
    jumps = torch.tensor([[0.05, -0.05, 0.05, 0.0], [-0.05, 0.05, -0.05, 0.0]])  # 0.05 per component; one still edge
    assert jump_dual_step(costs, jumps) == pytest.approx(0.2 / 0.05)
    # a start with no jumps at all (every spot alike) keeps the box's width
    assert jump_dual_step(costs, torch.zeros(2, 4)) == default_dual_step(costs) == pytest.approx(0.2)


def _problem(n_spots: int, seed: int = 0):
    sim = simulate_counts(n_spots=n_spots, n_types=20, n_genes=300, n_regions=8, depth=1000, platform_sd=0.3,
                          theta=20.0, seed=seed)
    profiles, _ = profiles_from_reference(sim.reference, np.ones(300), 1e-4)
    term = CountTerm(torch.tensor(sim.counts.T.copy()), torch.tensor(profiles),
                     scale=float(np.median(sim.counts.sum(axis=1))))
    none = Incidence(n_spots, np.zeros((0, 2), dtype=np.int64), 20, torch.device("cpu"), torch.float64)
    per_spot = solve_proportions(term, torch.full((20, n_spots), 0.05, dtype=torch.float64), none,
                                 torch.zeros(0, dtype=torch.float64), tol=1e-3)
    edges = delaunay_graph(sim.coords).edges
    incidence = Incidence(n_spots, edges, 20, torch.device("cpu"), torch.float64)
    return term, per_spot.fractions, incidence, torch.as_tensor(0.2 * uniform_weights(edges, n_spots))


def test_the_jump_rule_reaches_the_same_certificate_in_far_fewer_iterations(monkeypatch):
    """From the per-spot fit (the fits' start) at a fixed λ: same objective to the tolerance, ≤ half the iterations
    of the former rule (σ = the median edge cost, balanced against the dual residual only, first restart at 50)."""
    term, start, incidence, costs = _problem(400)
    now = solve_proportions(term, start, incidence, costs, tol=1e-4, max_iter=5000)
    monkeypatch.setattr(pstep, "DUAL_START", "cost")
    monkeypatch.setattr(pstep, "BALANCE_GAP", False)
    monkeypatch.setattr(pstep, "FIRST_REESTIMATE", 50)
    before = solve_proportions(term, start, incidence, costs, tol=1e-4, max_iter=5000)
    assert now.converged and before.converged
    assert now.objective == pytest.approx(before.objective, rel=1e-4)
    assert now.iterations <= 0.5 * before.iterations, (now.iterations, before.iterations)


def test_compositions_reuse_two_buffers_and_the_last_two_stay_valid():
    """The count term writes RᵀV into two buffers in turn: the current and the candidate composition are
    both intact (the solver holds exactly these two), and no call allocates a new genes × spots tensor."""
    rng = np.random.default_rng(0)
    R = torch.as_tensor(rng.dirichlet(np.ones(30), size=4))
    term = CountTerm(torch.as_tensor(rng.poisson(5.0, size=(30, 50)).astype(float)), R)
    V = [torch.as_tensor(rng.dirichlet(np.ones(4), size=50).T.copy()) for _ in range(3)]
    first, second = term.composition(V[0]), term.composition(V[1])
    torch.testing.assert_close(first, R.T @ V[0], rtol=0, atol=0)
    torch.testing.assert_close(second, R.T @ V[1], rtol=0, atol=0)
    third = term.composition(V[2])
    assert third.data_ptr() == first.data_ptr() and second.data_ptr() != first.data_ptr()
    torch.testing.assert_close(third, R.T @ V[2], rtol=0, atol=0)
    torch.testing.assert_close(term.loss(V[1], second), term.loss(V[1]))
