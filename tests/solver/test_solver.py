"""The solver against an independent solver (cvxpy) and against brute force, on small problems."""

from __future__ import annotations

import zlib

import cvxpy as cp
import numpy as np
import pytest
import scipy.optimize as so
import torch

from s3r import S3R
from s3r.graph import knn_graph, neighbour_mean_operator, reference_knn_operator
from s3r.solver import build_operator, solve_batch
from s3r.solver.datafit import SquaredLoss
from s3r.solver.penalties import GraphL1, GraphQuadratic, SparseGroupLasso

TOL = 1e-7  # solver tolerance for the comparisons; the assertion is on the objective (1e-4 relative)


def small_problem(seed=0, n=36, p=5, zeros=0):
    rng = np.random.default_rng(seed)
    coords = rng.uniform(size=(n, 2))
    X = rng.normal(size=(n, p))
    W = np.zeros((n, p))
    W[:, 0] = np.where(coords[:, 0] > 0.5, 2.0, -1.0)
    W[:, 1] = 1.5
    y = (X * W).sum(1) + 0.3 * rng.normal(size=n)
    if zeros:
        y[rng.choice(n, zeros, replace=False)] = 0.0
    return coords, X, y


def cvxpy_optimum(X, y, K, smooth, lam, alpha, beta, *, weights=None, free=None, Z=None, P=None):
    """The optimum by cvxpy; with ``P`` (n × n_c, 0/1) over the restricted W = P W_c only."""
    n, p = X.shape
    W = cp.Variable((n, p)) if P is None else P @ cp.Variable((P.shape[1], p))
    pred = cp.sum(cp.multiply(X, W), axis=1)
    constraints = []
    if Z is not None:
        gamma = cp.Variable(Z.shape[1])
        pred = pred + Z @ gamma
    o = np.ones(n) if weights is None else weights
    fit = cp.sum(cp.multiply(o, cp.square(y - pred))) / n
    KW = K @ W
    smooth_term = cp.sum(cp.abs(KW)) if smooth in ("tv", "graph_l1") else cp.sum_squares(KW)
    obj = fit + lam * smooth_term + alpha * cp.sum(cp.abs(W)) + beta * np.sqrt(n) * cp.sum(cp.norm(W, 2, axis=0))
    if free is not None and not free.all():
        constraints.append(W[np.flatnonzero(~free), :] == 0)
    problem = cp.Problem(cp.Minimize(obj), constraints)
    problem.solve(solver=cp.CLARABEL)
    assert problem.status == "optimal"
    return problem.value


def operator_matrix(smooth, coords, compat=False):
    """The smoothness operator as a plain scipy matrix, built independently of the solver's operators."""
    if smooth == "graph_l1":
        return reference_knn_operator(coords, 7) if compat else neighbour_mean_operator(knn_graph(coords, 5))
    graph = knn_graph(coords, 5)
    return graph.incidence()


CASES = [
    ("tv", False), ("graph_l1", False), ("graph_l1", True), ("quadratic", False),
]


@pytest.mark.parametrize("smooth,compat", CASES)
@pytest.mark.parametrize("variant", ["plain", "mask", "weights", "covariates", "all"])
def test_objective_matches_cvxpy(smooth, compat, variant):
    coords, X, y = small_problem(seed=zlib.crc32(f"{smooth}{compat}{variant}".encode()) % 1000, zeros=4 if variant in ("mask", "all") else 0)
    rng = np.random.default_rng(1)
    n = X.shape[0]
    weights = rng.uniform(0.2, 1.0, size=n) if variant in ("weights", "all") else None
    Z = rng.normal(size=(n, 2)) if variant in ("covariates", "all") else None
    if Z is not None:
        y = y + Z @ np.array([1.0, -2.0])
    lam, alpha, beta = 0.05, 0.02, 0.01
    model = S3R(smooth, lam, alpha, beta, k=5 if not compat else 7, compat=compat, scaling="reference", mask_zero_response=True, tol=TOL,
                max_iter=50_000, device="cpu")
    model.fit(X, y, coords, sample_weight=weights, covariates=Z)
    assert model.report_["converged"]
    K = operator_matrix(smooth, coords, compat)
    free = y != 0
    expected = cvxpy_optimum(X, y, K, smooth, lam, alpha, beta, weights=weights, free=free, Z=Z)
    assert abs(model.report_["objective"] - expected) <= 1e-4 * abs(expected)
    # the mask is exact, not approximate
    assert np.all(model.coef_[~free] == 0.0)


@pytest.mark.parametrize("smooth", ["tv", "graph_l1", "quadratic"])
def test_standard_scaling_matches_cvxpy(smooth):
    """The default parameterisation, written out independently: (1/n) Σ ((y_i − b − ⟨x_i, W_i⟩)/s_y)² + (1/n)[λ S(W̃) +
    α Σ|W̃| + β √n Σ‖W̃_j‖] with W̃ = W s_j / s_y (s_y the target's sd, s_j each feature's root mean square)."""
    coords, X, y = small_problem(seed=11, zeros=3)
    y = 40.0 + 25.0 * y  # an arbitrary scale and offset
    n = X.shape[0]
    lam, alpha, beta = 0.5, 0.02, 0.05
    model = S3R(smooth, lam, alpha, beta, k=5, tol=TOL, max_iter=50_000, device="cpu").fit(X, y, coords)
    assert model.report_["converged"] and model.report_["scaling"] == "standard"
    s = np.sqrt(np.mean(X**2, axis=0))
    K = operator_matrix(smooth, coords)
    expected = cvxpy_optimum(X / s, y / y.std(), K, smooth, lam / n, alpha / n, beta / n, Z=np.ones((n, 1)))
    assert abs(model.report_["objective"] - expected) <= 1e-4 * abs(expected)
    assert np.all(model.coef_[y == 0] != 0) or not np.any(model.coef_)  # no zero mask by default


def test_weighted_incidence_matches_cvxpy():
    coords, X, y = small_problem(seed=5)
    graph = knn_graph(coords, 5)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=graph.n_edges)
    graph = graph.with_weights(w)
    for smooth in ("tv", "quadratic"):
        model = S3R(smooth, 0.05, 0.02, 0.01, tol=TOL, scaling="reference", device="cpu").fit(X, y, coords, spot_graph=graph)
        A = graph.incidence()
        K = (A.T.multiply(w if smooth == "tv" else np.sqrt(w))).T.tocsr()
        expected = cvxpy_optimum(X, y, K, smooth, 0.05, 0.02, 0.01)
        assert abs(model.report_["objective"] - expected) <= 1e-4 * abs(expected)


def test_sparse_group_prox_matches_brute_force():
    rng = np.random.default_rng(3)
    n, B, p = 6, 2, 3
    V = rng.normal(size=(n, B, p)) * 2
    step = np.array([0.7, 0.3])
    alpha, beta = np.array([0.5, 0.1]), np.array([0.3, 0.9])
    factor = np.array([1.0, 0.0, 2.0])
    pen = SparseGroupLasso(torch.tensor(alpha), torch.tensor(beta), torch.tensor(factor), n, torch.ones(n, B, dtype=torch.float64))
    got = pen.prox(torch.tensor(V), torch.tensor(step)).numpy()
    for b in range(B):
        for j in range(p):
            v = V[:, b, j]
            t = step[b]

            def f(u):
                return 0.5 * np.sum((u - v) ** 2) + t * factor[j] * (alpha[b] * np.abs(u).sum() + beta[b] * np.sqrt(n) * np.linalg.norm(u))

            best = so.minimize(f, got[:, b, j] + 1e-3, method="Powell", options={"xtol": 1e-12, "ftol": 1e-14, "maxiter": 100000}).x
            assert f(got[:, b, j]) <= f(best) + 1e-9
            assert f(got[:, b, j]) <= f(v * 0.5) and f(got[:, b, j]) <= f(np.zeros(n))


def test_prox_gives_exact_zeros_and_respects_fixed_rows():
    V = torch.tensor([[[0.05, 3.0]], [[-0.02, -2.0]], [[0.01, 1.0]]], dtype=torch.float64)
    free = torch.tensor([[1.0], [1.0], [0.0]], dtype=torch.float64)
    pen = SparseGroupLasso(torch.tensor([0.1]), torch.tensor([0.0]), torch.ones(2, dtype=torch.float64), 3, free)
    out = pen.prox(V, torch.tensor([1.0])).numpy()
    assert np.all(out[:, 0, 0] == 0.0)  # |v| ≤ α: exactly zero
    assert out[2, 0, 1] == 0.0  # fixed row
    np.testing.assert_allclose(out[:2, 0, 1], [2.9, -1.9])


def test_dual_proxes_match_brute_force():
    rng = np.random.default_rng(4)
    n, B = 5, 1
    X = torch.tensor(rng.normal(size=(n, 3)))
    y = torch.tensor(rng.normal(size=(n, B)))
    o = torch.tensor(rng.uniform(0.1, 1, size=(n, B)))
    fit = SquaredLoss(X, y, o, None)
    a = torch.tensor(rng.normal(size=(n, B)))
    sigma = 0.37
    got = fit.dual_prox(a, torch.tensor(sigma)).numpy()
    for i in range(n):
        c = float(o[i, 0]) / n
        # prox of σφ*(v) with φ(z) = c (y − z)² computed from the definition φ*(v) = sup_z v z − φ(z)
        def phi_star(v):
            z = float(y[i, 0]) + v / (2 * c)
            return v * z - c * (float(y[i, 0]) - z) ** 2

        res = so.minimize_scalar(lambda v: sigma * phi_star(v) + 0.5 * (v - float(a[i, 0])) ** 2)
        assert abs(res.x - got[i, 0]) < 1e-6
    quad = GraphQuadratic(torch.tensor([0.8], dtype=torch.float64))
    U = torch.tensor(rng.normal(size=(4, 1, 2)))
    got = quad.dual_prox(U, torch.tensor(0.5)).numpy()
    # g*(u) = ‖u‖²/(4λ): prox is argmin ‖u‖²/(4λ)·σ + ½‖u − a‖²
    np.testing.assert_allclose(got, U.numpy() / (1 + 0.5 / (2 * 0.8)))
    box = GraphL1(torch.tensor([0.3], dtype=torch.float64))
    np.testing.assert_array_equal(box.dual_prox(U).numpy(), np.clip(U.numpy(), -0.3, 0.3))


def test_deterministic():
    coords, X, y = small_problem(seed=7, n=60)
    a = S3R("tv", 0.05, 0.02, 0.01, device="cpu").fit(X, y, coords)
    b = S3R("tv", 0.05, 0.02, 0.01, device="cpu").fit(X, y, coords)
    assert np.array_equal(a.coef_, b.coef_)
    assert a.report_["iterations"] == b.report_["iterations"]


@pytest.mark.parametrize("smooth", ["tv", "graph_l1", "quadratic"])
def test_float32_agrees_with_float64(smooth):
    coords, X, y = small_problem(seed=8, n=80)
    f64 = S3R(smooth, 0.05, 0.02, 0.01, tol=1e-5, device="cpu").fit(X, y, coords)
    f32 = S3R(smooth, 0.05, 0.02, 0.01, tol=1e-5, device="cpu", dtype="float32").fit(X, y, coords)
    assert f32.report_["dtype"] == "float32" and f32.report_["converged"]
    assert abs(f32.report_["objective"] - f64.report_["objective"]) <= 1e-4 * f64.report_["objective"]
    scale = np.abs(f64.coef_).max()
    assert np.max(np.abs(f32.coef_ - f64.coef_)) <= 1e-2 * scale


def test_batch_equals_separate_solves():
    coords, X, y = small_problem(seed=9, n=50)
    rng = np.random.default_rng(0)
    Y = np.stack([y, y + rng.normal(size=y.shape), y], axis=1)
    weights = np.ones((50, 3))
    weights[:10, 2] = 0.0  # a held-out fold
    lam, alpha, beta = np.array([0.05, 0.1, 0.02]), np.array([0.02, 0.01, 0.05]), np.array([0.01, 0.0, 0.02])
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, n_nodes=50)
    batch = solve_batch(X, Y, smooth="tv", operator=op, lambda_smooth=lam, alpha=alpha, beta=beta, weights=weights, tol=1e-8, device="cpu")
    assert batch.converged.all()
    for b in range(3):
        single = solve_batch(X, Y[:, b], smooth="tv", operator=op, lambda_smooth=lam[b], alpha=alpha[b], beta=beta[b], weights=weights[:, b], tol=1e-8, device="cpu")
        assert abs(single.objective[0] - batch.objective[b]) <= 1e-6 * single.objective[0]
        np.testing.assert_allclose(batch.W[:, b].numpy(), single.W[:, 0].numpy(), atol=1e-4 * np.abs(single.W.numpy()).max())


def test_warm_start_reaches_the_same_optimum_faster():
    coords, X, y = small_problem(seed=12, n=80)
    model = S3R("tv", 0.05, 0.02, 0.01, tol=1e-7, device="cpu", warm_start=True, scaling="reference").fit(X, y, coords)
    warm_total = fresh_total = 0
    for lam in (0.055, 0.06, 0.065):
        model.set_params(lambda_smooth=lam).fit(X, y, coords)
        fresh = S3R("tv", lam, 0.02, 0.01, tol=1e-7, device="cpu", scaling="reference").fit(X, y, coords)
        assert abs(model.report_["objective"] - fresh.report_["objective"]) <= 1e-6 * fresh.report_["objective"]
        warm_total += model.report_["iterations"]
        fresh_total += fresh.report_["iterations"]
    assert warm_total < 0.5 * fresh_total


def test_unpenalised_features_are_never_shrunk_to_zero():
    coords, X, y = small_problem(seed=11, n=60)
    big = S3R("tv", 0.05, 5.0, 5.0, device="cpu").fit(X, y, coords)
    assert np.all(big.coef_ == 0.0)  # strong penalties kill every penalised feature
    factor = np.array([0.0, 1, 1, 1, 1])
    kept = S3R("tv", 0.05, 5.0, 5.0, penalty_factor=factor, device="cpu").fit(X, y, coords)
    assert np.all(kept.coef_[:, 1:] == 0.0)
    assert np.all(kept.coef_[:, 0] != 0.0)


def test_covariate_coefficients_recovered():
    coords, X, y = small_problem(seed=12, n=200)
    Z = np.random.default_rng(2).normal(size=(200, 2))
    model = S3R("tv", 0.02, 0.001, 0.001, scaling="reference", fit_intercept=True, mask_zero_response=False, device="cpu")
    model.fit(X, y + Z @ np.array([3.0, -1.0]) + 5.0, coords, covariates=Z)
    np.testing.assert_allclose(model.covariate_coef_, [3.0, -1.0], atol=0.15)
    assert abs(model.intercept_ - 5.0) < 0.3


def test_recovers_regions_of_a_paper_style_simulation():
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from s3r.simulate import simulate

    sim = simulate("three_regions", sigma=1.0, seed=0)
    # the paper's design and parameterisation (the standard one is checked on realistic data in test_scaling/test_tune)
    model = S3R("tv", 0.05, 0.01, 0.02, device="cpu", tol=1e-6, scaling="reference").fit(sim.X, sim.y, sim.coords)
    labels = KMeans(sim.n_regions, n_init=10, random_state=0).fit_predict(model.coef_)
    assert adjusted_rand_score(sim.regions, labels) > 0.8
    # every informative feature is selected; uninformative ones are zero or negligible next to them
    informative = sorted({j for js in sim.informative.values() for j in js})
    noise = np.setdiff1d(np.arange(sim.n_features), informative)
    size = np.abs(model.coef_).max(axis=0)
    assert np.all(size[informative] > 1.0)
    assert np.all(size[noise] < 1e-3 * size[informative].min())
    assert np.mean(size[noise] == 0.0) > 0.4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    coords, X, y = small_problem(seed=13, n=80)
    cpu = S3R("tv", 0.05, 0.02, 0.01, device="cpu").fit(X, y, coords)
    gpu = S3R("tv", 0.05, 0.02, 0.01, device="cuda").fit(X, y, coords)
    assert gpu.report_["device"].startswith("cuda")
    assert abs(cpu.report_["objective"] - gpu.report_["objective"]) <= 1e-6 * cpu.report_["objective"]


@pytest.mark.parametrize("smooth", ["tv", "graph_l1", "quadratic"])
def test_global_dual_step_matches_cvxpy(smooth, monkeypatch):
    """The per-edge dual steps (Pock–Chambolle) are the default; the one global step bound from the maximum degree,
    kept as the alternative, still reaches the same optimum as cvxpy."""
    import s3r.solver.primal_dual as pd

    monkeypatch.setattr(pd, "PRECONDITION", False)
    monkeypatch.setattr(pd, "RELAX", 1.6)
    coords, X, y = small_problem(seed=21, zeros=3)
    rng = np.random.default_rng(2)
    n = X.shape[0]
    weights = rng.uniform(0.2, 1.0, size=n)
    Z = rng.normal(size=(n, 2))
    y = y + Z @ np.array([1.0, -2.0])
    model = S3R(smooth, 0.05, 0.02, 0.01, k=5, scaling="reference", mask_zero_response=True, tol=TOL, max_iter=50_000, device="cpu")
    model.fit(X, y, coords, sample_weight=weights, covariates=Z)
    assert model.report_["converged"]
    K = operator_matrix(smooth, coords)
    expected = cvxpy_optimum(X, y, K, smooth, 0.05, 0.02, 0.01, weights=weights, free=y != 0, Z=Z)
    assert abs(model.report_["objective"] - expected) <= 1e-4 * abs(expected)


def test_edge_bounds_are_local_and_never_above_the_global_bound():
    coords, _, _ = small_problem(seed=3, n=60)
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, n_nodes=60)
    r = op.edge_bounds()
    deg = np.bincount(graph.edges.ravel(), minlength=60)
    np.testing.assert_allclose(r, 2 * np.maximum(deg[graph.edges[:, 0]], deg[graph.edges[:, 1]]))
    assert r.max() <= op.norm_bound() + 1e-12 and r.min() < op.norm_bound()  # some edges get a larger step


def test_mixed_precision_meets_tol_in_float32_or_is_polished():
    coords, X, y = small_problem(seed=13, n=80)
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, n_nodes=80)
    kw = dict(smooth="tv", operator=op, lambda_smooth=0.05, alpha=0.02, beta=0.01, device="cpu")
    ref = solve_batch(X, y, **kw, tol=1e-9, dtype="float64")
    loose = solve_batch(X, y, **kw, tol=1e-5, dtype="mixed")  # float32 reaches 1e-5: no polish
    assert loose.converged.all() and loose.precision["polished"] is False and loose.W.dtype == torch.float32
    assert abs(loose.objective[0] - ref.objective[0]) <= 1e-4 * ref.objective[0]
    tight = solve_batch(X, y, **kw, tol=1e-9, dtype="mixed")  # beyond float32: polished in float64 from its state
    assert tight.converged.all() and tight.precision["polished"] is True and tight.W.dtype == torch.float64
    assert tight.iterations[0] > tight.precision["float32_iterations"][0]
    assert abs(tight.objective[0] - ref.objective[0]) <= 1e-7 * ref.objective[0]
    np.testing.assert_allclose(tight.W.numpy(), ref.W.numpy(), atol=1e-4 * np.abs(ref.W.numpy()).max())


@pytest.mark.parametrize("smooth", ["tv", "quadratic"])
@pytest.mark.parametrize("batch", [1, 3])
def test_the_folded_dual_step_reaches_the_same_optimum(smooth, batch, monkeypatch):
    """The per-edge step folded into K (one sparse product for U + σK(2W⁺ − W); a batch's per-problem part on
    2W⁺ − W) and the tv dual in units of λ; the unfolded path with the dual in its own units is the reference."""
    import s3r.solver.primal_dual as pd

    coords, X, y = small_problem(seed=5, n=60)
    graph = knn_graph(coords, 5)
    op = build_operator(smooth, edges=graph.edges, edge_weights=np.linspace(0.5, 1.5, len(graph.edges)), n_nodes=60)
    lam = [0.05, 0.0, 0.2][:batch]
    Y = np.repeat(y[:, None], batch, axis=1) + np.linspace(0, 0.3, batch)
    kw = dict(smooth=smooth, operator=op, lambda_smooth=lam, alpha=0.02, beta=0.01, tol=1e-8, dtype="float64", coarsen=False)
    folded = solve_batch(X, Y, **kw)
    monkeypatch.setattr(pd, "FOLD_STEP", False)
    monkeypatch.setattr(pd, "UNIT_DUAL", False)
    plain = solve_batch(X, Y, **kw)
    assert folded.converged.all() and plain.converged.all()
    np.testing.assert_allclose(folded.objective, plain.objective, rtol=1e-7)
    np.testing.assert_allclose(folded.W.numpy(), plain.W.numpy(), atol=1e-5 * np.abs(plain.W.numpy()).max())
    K = op.to_scipy()
    sigma = np.linspace(1.0, 2.0, K.shape[0])
    dense = op.row_scaled(torch.as_tensor(sigma)).to_dense().numpy()
    np.testing.assert_allclose(dense, sigma[:, None] * K.toarray())


def test_lambda_zero_is_no_smoothing_in_every_mode():
    """λ = 0 switches the smoothness term off: tv and quadratic reach the same optimum, the plain sparse group lasso's
    (quadratic's dual prox divided 0 by 0 there, and S3R(smooth="quadratic", lambda_smooth=0) returned NaN maps)."""
    coords, X, y = small_problem(seed=5, n=60)
    graph = knn_graph(coords, 5)
    best = cvxpy_optimum(X, y, graph.incidence(), "tv", 0.0, 0.02, 0.01)
    for smooth in ("tv", "quadratic"):
        op = build_operator(smooth, edges=graph.edges, edge_weights=graph.weights, n_nodes=60)
        res = solve_batch(X, y, smooth=smooth, operator=op, lambda_smooth=0.0, alpha=0.02, beta=0.01, tol=1e-8, dtype="float64",
                          coarsen=False)
        assert res.converged.all() and not torch.isnan(res.W).any()
        assert res.objective[0] == pytest.approx(best, rel=1e-4)


def test_a_stalled_float32_stage_hands_over_to_the_float64_polish(monkeypatch):
    """Asked for 1e-8, float32 sits at its floor (here 1.1e-6 from ~700 iterations on): the stall test stops it and the
    float64 polish finishes from its state at the float64 / cvxpy optimum; without the test float32 runs its cap."""
    import s3r.solver.batch as batch

    coords, X, y = small_problem(seed=13, n=80)
    graph = knn_graph(coords, 5)
    op = build_operator("tv", edges=graph.edges, n_nodes=80)
    kw = dict(smooth="tv", operator=op, lambda_smooth=0.05, alpha=0.02, beta=0.01, device="cpu")
    ref = solve_batch(X, y, **kw, tol=1e-10, dtype="float64")
    expected = cvxpy_optimum(X, y, graph.incidence(), "tv", 0.05, 0.02, 0.01)
    monkeypatch.setattr(batch, "FLOAT32_TOL", 1e-8)  # below float32's reach on this problem
    # the stall counts below 1e-5 (not 100 × 1e-8 = 1e-6): with the step floor float32's floor here is 1.1e-6, at τ 1.38
    monkeypatch.setattr(batch, "STALL_BELOW", 1000.0)
    res = solve_batch(X, y, **kw, tol=1e-8, dtype="mixed", max_iter=3000, stall=300)
    assert res.precision["float32_stalled"] is True and res.precision["polished"] is True
    assert res.precision["float32_iterations"][0] < 1500 and res.W.dtype == torch.float64
    assert res.converged.all()
    assert abs(res.objective[0] - ref.objective[0]) <= 1e-7 * ref.objective[0]
    assert abs(res.objective[0] - expected) <= 1e-4 * abs(expected)
    np.testing.assert_allclose(res.W.numpy(), ref.W.numpy(), atol=1e-4 * np.abs(ref.W.numpy()).max())
    stuck = solve_batch(X, y, **kw, tol=1e-8, dtype="mixed", max_iter=3000, stall=10**9)  # no stall test in reach
    assert stuck.precision["float32_stalled"] is False and stuck.precision["float32_iterations"][0] == 3000
    assert abs(stuck.objective[0] - ref.objective[0]) <= 1e-7 * ref.objective[0]


def test_estimator_solves_in_mixed_precision_by_default_and_records_it():
    """S3R's default dtype is "mixed": at the default tolerance float32 alone meets it; the coefficients equal the
    float64 fit's within that tolerance, and the report says which precision the answer came from."""
    coords, X, y = small_problem(seed=13, n=80)
    kw = dict(smooth="tv", lambda_smooth=0.05, alpha=0.02, beta=0.01, tol=1e-5, device="cpu")
    mixed = S3R(**kw).fit(X, y, coords)
    exact = S3R(**kw, dtype="float64").fit(X, y, coords)
    assert mixed.dtype == "mixed" and mixed.report_["converged"] and exact.report_["converged"]
    assert mixed.report_["dtype"] == "mixed" and exact.report_["dtype"] == "float64"
    assert mixed.report_["precision"]["final"] == "float32" and mixed.report_["precision"]["polished"] is False
    assert exact.report_["precision"] is None
    assert abs(mixed.report_["objective"] - exact.report_["objective"]) <= 1e-5 * exact.report_["objective"]
    np.testing.assert_allclose(mixed.coef_, exact.coef_, atol=1e-3 * np.abs(exact.coef_).max())
    assert mixed.coef_.dtype == np.float64  # the answer is handed back in float64 whatever the iterations ran in
    tight = S3R(**{**kw, "tol": 1e-8}).fit(X, y, coords)  # below float32's reach: polished in float64
    assert tight.report_["precision"]["final"] == "float64" and tight.report_["converged"]
    np.testing.assert_allclose(tight.coef_, S3R(**{**kw, "tol": 1e-8}, dtype="float64").fit(X, y, coords).coef_,
                               atol=1e-5 * np.abs(exact.coef_).max())


def test_estimator_follows_scikit_learn_conventions():
    """``graph`` is a parameter (the method's name) and ``spot_graph`` the fit-time graph, so get_params/clone never
    meet a SpatialGraph; predicting before fit raises scikit-learn's NotFittedError."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    coords, X, y = small_problem(seed=5)
    model = S3R("tv", 0.05, 0.02, 0.01, graph="knn", k=5, device="cpu")
    with pytest.raises(NotFittedError, match="not fitted yet"):
        model.predict(X)
    graph = knn_graph(coords, 5)
    fitted = model.fit(X, y, coords, spot_graph=graph)
    assert fitted.get_params()["graph"] == "knn" and fitted.graph_ is graph
    twin = clone(fitted).fit(X, y, coords)  # builds its own kNN graph with k = 5: the same one
    np.testing.assert_allclose(twin.coef_, fitted.coef_, atol=1e-10)
