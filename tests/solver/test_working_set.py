"""Working sets over features: the restricted solves plus the zero certificate give the full problem's optimum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import s3r.solver.working_set as ws_mod
from s3r.graph import knn_graph, neighbour_mean_operator
from s3r.solver import build_operator, solve_batch
from s3r.solver.certificates import check_excluded

from test_solver import cvxpy_optimum


def wide_problem(seed=0, n=60, p=40, informative=12):
    """More features than the smallest working set, a dozen of them spatially varying, the rest noise."""
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    X = rng.normal(size=(n, p))
    W = np.zeros((n, p))
    for j in range(informative):
        W[:, j] = np.where(coords[:, j % 2] > 0.5, 1.0 + 0.2 * j, -0.5)
    y = (X * W).sum(1) + 0.3 * rng.normal(size=n)
    return coords, X, y


def operator_for(smooth, coords):
    graph = knn_graph(coords, 5)
    if smooth == "graph_l1":
        M = neighbour_mean_operator(graph)
        return build_operator("graph_l1", matrix=M), M
    return build_operator(smooth, edges=graph.edges, n_nodes=len(coords)), graph.incidence()


@pytest.mark.parametrize("smooth", ["tv", "graph_l1", "quadratic"])
@pytest.mark.parametrize("variant", ["plain", "all"])
def test_working_set_grows_several_times_and_matches_cvxpy_and_the_full_solve(smooth, variant, monkeypatch):
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)  # start tiny so the set must grow several times
    coords, X, y = wide_problem(seed=3)
    n, p = X.shape
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.2, 1.0, size=n) if variant == "all" else None
    free = np.ones(n, dtype=bool)
    Z = None
    if variant == "all":
        free[rng.choice(n, 4, replace=False)] = False
        Z = rng.normal(size=(n, 2))
        y = y + Z @ np.array([1.0, -2.0])
    op, K = operator_for(smooth, coords)
    lam, alpha = 0.05, 0.02
    beta = 0.12 if smooth == "quadratic" else 0.03  # the quadratic term does not help to zero a feature
    kw = dict(smooth=smooth, operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, weights=weights, free_rows=free.astype(float),
              covariates=Z, tol=1e-7, max_iter=100_000, device="cpu")
    res = solve_batch(X, y, working_set=True, **kw)
    info = res.working_set
    assert res.converged[0] and info["check_passed"]
    assert len(info["sizes"]) >= 3 and info["sizes"] == sorted(info["sizes"])  # grew at least twice
    assert info["size"] < p  # and some features were certified at zero without ever being solved for
    expected = cvxpy_optimum(X, y, K, smooth, lam, alpha, beta, weights=weights, free=free, Z=Z)
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)

    full = solve_batch(X, y, working_set=False, **kw)
    assert full.working_set is None and full.converged[0]
    W, Wf = res.W[:, 0].numpy(), full.W[:, 0].numpy()
    scale = np.abs(Wf).max()
    np.testing.assert_allclose(W, Wf, atol=1e-3 * scale)
    outside = ~np.any(W != 0, axis=0)
    assert outside.sum() >= p - info["size"]
    assert np.abs(Wf[:, outside]).max() <= 1e-3 * scale  # what the working set left at zero is zero in the full solve


def test_batched_working_set_matches_separate_full_solves(monkeypatch):
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    coords, X, y = wide_problem(seed=5)
    n = X.shape[0]
    Y = np.stack([y, y + np.random.default_rng(0).normal(size=n), y], axis=1)
    weights = np.ones((n, 3))
    weights[:10, 2] = 0.0  # a held-out fold
    op, _ = operator_for("tv", coords)
    lam, alpha, beta = np.array([0.05, 0.1, 0.02]), np.array([0.02, 0.01, 0.05]), np.array([0.03, 0.05, 0.02])
    seen = []
    batch = solve_batch(X, Y, smooth="tv", operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, weights=weights, tol=1e-8,
                        device="cpu", working_set=True, callback=seen.append)
    assert batch.converged.all() and batch.working_set["check_passed"]
    its = [e["iteration"] for e in seen]
    assert its and its == sorted(its) and all(e["working_set"] >= 2 for e in seen)  # progress counts across the outer solves
    for b in range(3):
        single = solve_batch(X, Y[:, b], smooth="tv", operator=op, lambda_smooth=lam[b], alpha=alpha[b], beta=beta[b],
                             weights=weights[:, b], tol=1e-8, device="cpu", working_set=False)
        assert abs(single.objective[0] - batch.objective[b]) <= 1e-6 * single.objective[0]


def test_edge_certificate_excludes_what_z_zero_cannot():
    """A feature whose gradient is pure spatial noise: too large for α, β alone, absorbed by the tv edge dual."""
    rng = np.random.default_rng(0)
    n = 200
    coords = rng.uniform(size=(n, 2))
    op, _ = operator_for("tv", coords)
    X = torch.ones((n, 1), dtype=torch.float64)
    v = torch.as_tensor(rng.normal(size=(n, 1)) * 0.01)
    v -= v.mean()  # no constant part: only the smoothness can carry it
    free = torch.ones((n, 1), dtype=torch.float64)
    alpha, beta = torch.tensor([0.001]), torch.tensor([0.0001])
    f = torch.ones(1, dtype=torch.float64)
    no_smooth, _, _ = check_excluded(X, v, free, np.array([0]), alpha, beta, f, None, None)
    assert no_smooth[0]  # z = 0 does not certify it
    strong, _, iters = check_excluded(X, v, free, np.array([0]), alpha, beta, f, op, torch.tensor([1.0]))
    assert not strong[0] and iters > 0  # a strong tv certifies it at zero
    weak, _, _ = check_excluded(X, v, free, np.array([0]), alpha, beta, f, op, torch.tensor([1e-5]))
    assert weak[0]  # a weak one cannot: then the feature stays a candidate


def noise_gradient_columns(n=150, seed=2):
    """(coordinates, tv operator, data gradient v of spatial noise, six columns scaling it 0.2–40×): some certified
    at zero by the edge dual, some not."""
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    op, _ = operator_for("tv", coords)
    v = torch.as_tensor(rng.normal(size=(n, 1)) * 0.01)
    v -= v.mean()
    return coords, op, v, torch.ones((n, 6), dtype=torch.float64) * torch.linspace(0.2, 40.0, 6, dtype=torch.float64)


CHECK_ARGS = (torch.tensor([0.001]), torch.tensor([0.0001]))  # α, β of the certificate tests; λ 0.05


def test_certificate_search_decides_each_column_as_if_alone():
    """Columns leave the search once decided; the others' verdicts are those of a search over each column alone."""
    coords, op, v, X6 = noise_gradient_columns()
    n = len(coords)
    smooth_part = torch.as_tensor(np.where(coords[:, :1] > 0.5, 1.0, -1.0))  # a gradient tv cannot absorb cheaply
    X = torch.cat([X6, smooth_part * torch.linspace(1.0, 20.0, 4, dtype=torch.float64)], dim=1)
    free = torch.ones((n, 1), dtype=torch.float64)
    (alpha, beta), lam = CHECK_ARGS, torch.tensor([0.05])
    f = torch.ones(X.shape[1], dtype=torch.float64)
    cols = np.arange(X.shape[1])
    together, score, _ = check_excluded(X, v, free, cols, alpha, beta, f, op, lam)
    alone = [check_excluded(X, v, free, np.array([j]), alpha, beta, f, op, lam) for j in cols]
    assert together.tolist() == [a[0][0] for a in alone]
    np.testing.assert_allclose(score, [a[1][0] for a in alone], rtol=1e-12)  # the violators' ranking too
    assert len({a[2] for a in alone}) >= 3  # columns decided after different numbers of search iterations
    assert 0 < together.sum() < len(cols)  # some certified, some not: the search did drop columns on the way


def test_a_stored_certificate_decides_the_next_check_without_a_search():
    """The certificates one check ends with start the next: the same gradient again is decided at once, with the
    same verdicts; a certificate that no longer holds is searched from, not trusted."""
    coords, op, v, X = noise_gradient_columns()
    free = torch.ones((len(coords), 1), dtype=torch.float64)
    (alpha, beta), lam = CHECK_ARGS, torch.tensor([0.05])
    f = torch.ones(X.shape[1], dtype=torch.float64)
    cols = np.arange(X.shape[1])
    plain, _, searched = check_excluded(X, v, free, cols, alpha, beta, f, op, lam)
    buffer = torch.zeros((op.shape[0], 1, X.shape[1]), dtype=torch.float16)
    first, _, first_iters = check_excluded(X, v, free, cols, alpha, beta, f, op, lam, certificates=buffer)
    again, _, again_iters = check_excluded(X, v, free, cols, alpha, beta, f, op, lam, certificates=buffer)
    assert first.tolist() == plain.tolist() == again.tolist() and first_iters == searched > 0
    assert not plain.all() and again_iters == 0  # certified columns need no search the second time
    # a column's gradient grows tenfold: its old certificate no longer proves W_j = 0, the search decides afresh
    bigger, _, _ = check_excluded(X * 10, v, free, cols, alpha, beta, f, op, lam)
    reused, _, _ = check_excluded(X * 10, v, free, cols, alpha, beta, f, op, lam, certificates=buffer)
    assert reused.tolist() == bigger.tolist()


def slow_batch(n_problems=6):
    """A batch whose problems need their sets to grow several times, and a last one too slow for the budget."""
    coords, X, y = wide_problem(seed=5)
    rng = np.random.default_rng(0)
    Y = np.stack([y + 0.3 * k * rng.normal(size=len(y)) for k in range(n_problems)], axis=1)
    lam = np.array([0.05, 0.1, 0.05, 0.02, 0.08, 0.3])
    alpha = np.array([0.02, 0.01, 0.03, 0.01, 0.02, 0.001])
    beta = np.array([0.03, 0.05, 0.02, 0.04, 0.03, 0.001])  # the last: > 3,000 iterations to 1e-6
    return coords, X, Y, lam, alpha, beta


def test_a_slow_problem_does_not_keep_its_batch_from_growing_the_set(monkeypatch):
    """Each problem is checked and certified once it has converged on the current set: the others of a batch of six
    grow the shared set and reach their optimum (cvxpy's, and their solves alone) while the slow one runs out of
    iterations and is reported unconverged (benchmarks/README.md, session 13)."""
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    coords, X, Y, lam, alpha, beta = slow_batch()
    op, K = operator_for("tv", coords)
    kw = dict(smooth="tv", operator=op, tol=1e-6, device="cpu", working_set=True, prune_zeros=False)
    batch = solve_batch(X, Y, lambda_smooth=lam, alpha=alpha, beta=beta, max_iter=3000, **kw)
    assert batch.converged.tolist() == [True] * 5 + [False]
    assert batch.iterations[5] == 3000 and batch.iterations[:5].max() < 3000
    assert len(batch.working_set["sizes"]) >= 4  # the set grew three times: not all of it while the slow one ran
    for b in range(5):
        alone = solve_batch(X, Y[:, b], lambda_smooth=lam[b], alpha=alpha[b], beta=beta[b], max_iter=20_000, **kw)
        assert alone.converged[0] and abs(batch.objective[b] - alone.objective[0]) <= 1e-6 * alone.objective[0]
        expected = cvxpy_optimum(X, Y[:, b], K, "tv", lam[b], alpha[b], beta[b])
        assert abs(batch.objective[b] - expected) <= 1e-4 * abs(expected)



def test_the_returned_dual_certifies_the_columns_left_at_zero(monkeypatch):
    """The edge dual of a column outside the final working set is its certificate, not zero: a solve warm-started
    from the result (the float64 polish of ``mixed``, the next coarse-to-fine level, the next CV chunk) then starts a
    re-entering column where it was, not cold (10⁵ spots: 2,090 polish iterations from a zeroed column's dual)."""
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    coords, X, y = wide_problem(seed=3)
    n, p = X.shape
    op, _ = operator_for("tv", coords)
    lam, alpha, beta = 0.05, 0.02, 0.03
    res = solve_batch(X, y, smooth="tv", operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, tol=1e-8, max_iter=100_000,
                      device="cpu", working_set=True, prune_zeros=False)
    assert res.converged[0] and res.working_set["check_passed"]
    W = res.W[:, 0].numpy()
    out = np.flatnonzero(~np.any(W != 0, axis=0))
    assert out.size >= 5
    # the optimality of W_j = 0 with this dual: ‖S_α(g_j + Kᵀ U_j)‖₂ ≤ β √n, |U_j| ≤ λ (g_j the data gradient's column)
    Xt = torch.as_tensor(X)
    v = (2.0 / n) * (torch.as_tensor(X * W).sum(1) - torch.as_tensor(y))
    U = res.dual[:, :, torch.as_tensor(out)]
    assert float(U.abs().max()) <= lam * (1 + 1e-3)
    G = (v.view(-1, 1) * Xt[:, out]).unsqueeze(1)
    excess = lambda A: torch.linalg.vector_norm(A - A.clamp(-alpha, alpha), dim=0).view(-1) / (beta * n**0.5)  # noqa: E731
    assert float(excess(G + op.adjoint(U)).max()) <= 1.01  # certified (float16 storage: 1 % slack)
    assert float(excess(G).max()) > 1.2  # … where a zero dual would not certify some of them



@pytest.mark.parametrize("budget", [0, ws_mod.START_ITER, 300])
def test_a_chunked_solves_warm_check_budget_changes_its_path_not_its_optimum(budget, monkeypatch):
    """``check_warm_start`` searches the warm start's excluded columns for WARM_CHECK_ITER FISTA iterations only (session
    17: with the full 300 that check was 76 % of the tuning's fold job at 3·10⁴ spots). A column it leaves undecided
    counts as a violator and enters the set; only the check after a converged solve decides. So whatever the budget,
    chunks of 200 iterations warm-started from each other end at the cvxpy optimum, converged and certified."""
    monkeypatch.setattr(ws_mod, "MIN_SIZE", 2)
    monkeypatch.setattr(ws_mod, "WARM_CHECK_ITER", budget)
    coords, X, y = wide_problem(seed=3)
    op, K = operator_for("tv", coords)
    lam, alpha, beta = 0.05, 0.02, 0.03
    kw = dict(smooth="tv", operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, tol=1e-7, device="cpu", working_set=True,
              coarsen=False, check_warm_start=True)
    state, res = {}, None
    for _ in range(100):
        res = solve_batch(X, y, max_iter=200, **kw, **state)
        if res.converged[0]:
            break
        state = dict(W0=res.W, gamma0=res.gamma, dual0=res.dual, data_dual0=res.data_dual, step0=res.step)
    assert res.converged[0] and res.working_set["check_passed"]
    expected = cvxpy_optimum(X, y, K, "tv", lam, alpha, beta)
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)
