"""Proportions mode: recovery of known proportions, λ chosen by held-out genes, the solver against cvxpy."""

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
import torch

from s3r.deconv.counts import (
    CountTerm,
    cell_fractions,
    match_counts_reference,
    platform_effects,
    profiles_from_reference,
    transcript_fractions,
)
from s3r.deconv.operators import Incidence
from s3r.deconv.proportions import CellTypeProportions, combined_mst
from s3r.deconv.pstep import solve_proportions
from s3r.deconv.simulate import simulate_counts
from s3r.errors import S3RInputError
from s3r.graph import delaunay_graph, mst_graph

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LAMBDAS = (0.0, 0.05, 0.2, 1.0)


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def spatial():
    return simulate_counts(n_spots=400, spatial=True, platform_sd=0.3, seed=1)


def test_spatial_truth_chooses_a_spatial_term_that_beats_lambda_zero(spatial):
    sim = spatial
    model = CellTypeProportions(lambdas=LAMBDAS).fit(sim.counts, sim.reference, sim.coords)
    per_spot = CellTypeProportions(lambda_smooth=0.0).fit(sim.counts, sim.reference, sim.coords)
    assert model.lambda_ > 0 and model.report_["lambda_choice"] == "held-out genes"
    assert rmse(model.proportions_, sim.proportions) < 0.85 * rmse(per_spot.proportions_, sim.proportions)
    np.testing.assert_allclose(model.proportions_.sum(axis=1), 1.0, atol=1e-12)
    assert model.proportions_.min() >= 0.0
    assert model.certificate_["converged"] and model.certificate_["relative_gap"] <= 1e-4
    evidence = model.summary_of_choice()
    assert 0.0 in set(evidence["lambda"]) and evidence.loc[evidence["chosen"], "lambda"].item() == model.lambda_
    assert evidence.loc[evidence["chosen"], "mean"].item() == evidence["mean"].max()
    assert set(model.cv_["fold"]) == {0, 1, 2}


def test_without_spatial_structure_the_choice_is_no_worse_than_lambda_zero():
    """Every spot draws its own proportions: the path's larger λ predict held-out genes worse and are not
    chosen, and what is chosen costs nothing against λ = 0."""
    sim = simulate_counts(n_spots=400, spatial=False, seed=1)
    model = CellTypeProportions(lambdas=LAMBDAS, cv_patience=None).fit(sim.counts, sim.reference, sim.coords)
    per_spot = CellTypeProportions(lambda_smooth=0.0).fit(sim.counts, sim.reference, sim.coords)
    assert model.lambda_ <= 0.05
    assert rmse(model.proportions_, sim.proportions) <= 1.02 * rmse(per_spot.proportions_, sim.proportions)
    means = model.summary_of_choice().set_index("lambda")["mean"]
    assert means[1.0] < means[0.2] < means[0.0]
    # the default stops the path two λ past the best: the same choice without the costliest (largest) λ
    early = CellTypeProportions(lambdas=(0.0, 0.05, 0.1, 0.2, 1.0)).fit(sim.counts, sim.reference, sim.coords)
    tried = sorted(set(early.cv_["lambda"]))
    best = tried.index(early.cv_.groupby("lambda")["heldout_loglik_per_count"].mean().idxmax())
    assert early.lambda_ == model.lambda_ and 1.0 not in tried and len(tried) == best + 3
    np.testing.assert_array_equal(early.proportions_, model.proportions_)
    with pytest.raises(S3RInputError, match="cv_patience"):
        CellTypeProportions(cv_patience=0).fit(sim.counts, sim.reference, sim.coords)


def test_deep_counts_recover_cell_fractions_exactly_per_spot():
    """With 10⁶ counts per spot λ = 0 is enough, and only converting transcript to cell fractions gets it right."""
    sim = simulate_counts(n_spots=60, n_types=4, n_genes=40, depth=1e6, seed=3)
    model = CellTypeProportions(lambda_smooth=0.0, estimate_platform_effects=False, floor=0.0, tol=1e-7).fit(
        sim.counts, sim.reference, sim.coords
    )
    assert rmse(model.proportions_, sim.proportions) < 3e-3
    assert rmse(model.transcript_fractions_, sim.proportions) > 0.02  # types differ in RNA content
    np.testing.assert_allclose(cell_fractions(transcript_fractions(sim.proportions, model.cell_sizes_), model.cell_sizes_),
                               sim.proportions, atol=1e-12)


def test_family_auto_takes_nb_only_for_overdispersed_counts(spatial):
    poisson = CellTypeProportions(lambda_smooth=0.0).fit(spatial.counts, spatial.reference, spatial.coords)
    assert poisson.report_["family"] == "poisson" and poisson.report_["overdispersion"] < 0.2
    sim = simulate_counts(n_spots=300, depth=2000, theta=5.0, seed=4)
    nb = CellTypeProportions(lambda_smooth=0.0).fit(sim.counts, sim.reference, sim.coords)
    assert nb.report_["family"] == "nb" and 3.0 < nb.theta_ < 8.0 and nb.report_["overdispersion"] > 1.0
    forced = CellTypeProportions(lambda_smooth=0.0, family="poisson").fit(sim.counts, sim.reference, sim.coords)
    assert rmse(nb.proportions_, sim.proportions) < rmse(forced.proportions_, sim.proportions)


def test_platform_effects_are_recovered(spatial):
    gamma = platform_effects(spatial.counts, spatial.reference)
    assert np.corrcoef(np.log(gamma), np.log(spatial.platform_effects))[0, 1] > 0.85
    assert np.mean(np.log(gamma)) == pytest.approx(0.0, abs=1e-12)
    same = simulate_counts(n_spots=400, spatial=True, platform_sd=0.0, seed=1)
    assert np.abs(np.log(platform_effects(same.counts, same.reference))).max() < 0.25


def test_a_gene_no_reference_type_shows_keeps_unit_platform_effect(spatial):
    """Real pairs (the lymph node's single-cell reference) hold genes the reference never shows; their bulk once
    sent γ to ~1e288 there and every other gene's γ to ~0."""
    reference = spatial.reference.copy()
    reference[:, [0, 5]] = 0.0
    gamma = platform_effects(spatial.counts, reference)
    assert np.all(np.isfinite(gamma)) and gamma[0] == 1.0 and gamma[5] == 1.0
    shown = np.ones(reference.shape[1], dtype=bool)
    shown[[0, 5]] = False
    assert np.mean(np.log(gamma)) == pytest.approx(0.0, abs=1e-12)
    assert np.corrcoef(np.log(gamma[shown]), np.log(spatial.platform_effects[shown]))[0, 1] > 0.85
    _, sizes = profiles_from_reference(reference, gamma, 1e-4)
    _, kept = profiles_from_reference(spatial.reference[:, shown], platform_effects(spatial.counts[:, shown], spatial.reference[:, shown]), 1e-4)
    np.testing.assert_allclose(sizes, kept, rtol=0.1)


def test_same_seed_same_numbers():
    sim = simulate_counts(n_spots=150, n_types=4, n_genes=30, seed=2)
    first = CellTypeProportions(lambdas=(0.0, 0.2), seed=4).fit(sim.counts, sim.reference, sim.coords)
    second = CellTypeProportions(lambdas=(0.0, 0.2), seed=4).fit(sim.counts, sim.reference, sim.coords)
    np.testing.assert_array_equal(first.proportions_, second.proportions_)
    pd.testing.assert_frame_equal(first.cv_.drop(columns="seconds"), second.cv_.drop(columns="seconds"))


@pytest.mark.parametrize("start", ["uniform", "noisy"])
def test_condat_vu_matches_cvxpy_on_a_small_problem(start):
    """From a uniform start the first dual step is the median edge cost; from a noisy one it follows the jumps."""
    sim = simulate_counts(n_spots=30, n_types=3, n_genes=12, depth=80, seed=5)
    profiles, _ = profiles_from_reference(sim.reference, np.ones(12), 1e-3)
    edges = delaunay_graph(sim.coords).edges
    costs = np.random.default_rng(0).uniform(0.05, 0.3, size=len(edges))
    scale = float(np.median(sim.counts.sum(axis=1)))
    term = CountTerm(torch.tensor(sim.counts.T.copy()), torch.tensor(profiles), scale=scale)
    incidence = Incidence(30, edges, 3, torch.device("cpu"), torch.float64)
    first = np.full((3, 30), 1 / 3) if start == "uniform" else np.random.default_rng(1).dirichlet(np.ones(3), 30).T
    result = solve_proportions(term, torch.tensor(first), incidence, torch.tensor(costs), tol=1e-7, max_iter=20000)
    assert result.converged

    V = cp.Variable((30, 3), nonneg=True)
    Z = V @ profiles
    A = np.zeros((len(edges), 30))
    A[np.arange(len(edges)), edges[:, 0]], A[np.arange(len(edges)), edges[:, 1]] = 1.0, -1.0
    data = -cp.sum(cp.multiply(sim.counts, cp.log(Z))) / scale + float(term.constant.sum()) / scale
    penalty = cp.sum(cp.multiply(costs[:, None], cp.abs(A @ V)))
    problem = cp.Problem(cp.Minimize(data + penalty), [cp.sum(V, axis=1) == 1])
    problem.solve(solver="CLARABEL")
    assert result.objective == pytest.approx(problem.value, rel=1e-5)
    np.testing.assert_allclose(result.fractions.T.numpy(), V.value, atol=2e-3)


def test_combined_mst_is_a_spanning_tree_that_avoids_composition_jumps(spatial):
    sim = spatial
    tree = combined_mst(sim.coords, sim.proportions, alpha=0.2)
    assert tree.n_edges == 399 and tree.components()[0] == 1 and tree.method == "mst_combined"
    crossing = lambda g: int(np.sum(sim.regions[g.edges[:, 0]] != sim.regions[g.edges[:, 1]]))
    assert crossing(tree) == sim.regions.max()  # one edge per border between the bands
    assert crossing(mst_graph(sim.coords)) > crossing(tree)


def test_mst_graphs_fit_with_learned_weights(spatial):
    sim = spatial
    for graph in ("mst", "mst_combined"):
        model = CellTypeProportions(lambda_smooth=0.5, graph=graph).fit(sim.counts, sim.reference, sim.coords)
        assert model.graph_.n_edges == 399 and model.report_["learned_weights"]
        assert model.report_["weight_changes"] >= 1 and np.ptp(model.edge_weights_) > 0


def test_inputs_are_checked_with_one_line_errors():
    sim = simulate_counts(n_spots=50, n_types=3, n_genes=20, seed=0)
    counts = pd.DataFrame(sim.counts, index=sim.spot_ids, columns=sim.genes)
    reference = pd.DataFrame(sim.reference, index=sim.cell_types, columns=sim.genes)
    with pytest.raises(S3RInputError, match=r"^spots.csv and ref.csv share 0 gene name\(s\)"):
        match_counts_reference(counts, reference.rename(columns=str.upper), source_counts="spots.csv", source_reference="ref.csv")
    bad = counts.copy()
    bad.iloc[7, 2] = -1
    with pytest.raises(S3RInputError, match=r"^spots.csv: spot\(s\) spot_8 have negative"):
        match_counts_reference(bad, reference, source_counts="spots.csv")
    empty = counts.copy()
    empty.iloc[3] = 0
    with pytest.raises(S3RInputError, match=r"spot\(s\) spot_4 have no counts.*drop them"):
        match_counts_reference(empty, reference)
    with pytest.raises(S3RInputError, match="cell type 'type_1' appears twice"):
        match_counts_reference(counts, pd.concat([reference, reference.iloc[:1]]))
    with pytest.raises(S3RInputError, match="unknown family 'gaussian'"):
        CellTypeProportions(family="gaussian").fit(counts, reference, sim.coords)
    with pytest.raises(S3RInputError, match=r"n_folds must be an integer in 2\.\.20"):
        CellTypeProportions(n_folds=1).fit(counts, reference, sim.coords)
    with pytest.raises(S3RInputError, match="lambda must be a number ≥ 0 or 'auto'"):
        CellTypeProportions(lambda_smooth="best").fit(counts, reference, sim.coords)


def test_lambda_is_chosen_on_a_compact_window_of_large_sections(spatial):
    """Half the section, around its centre, chooses the λ the whole section chooses: the choice is a held-out
    likelihood per count, and λ is unit-free. Same λ, same final fit on every spot."""
    sim = spatial
    window = CellTypeProportions(lambdas=LAMBDAS, cv_max_spots=200).fit(sim.counts, sim.reference, sim.coords)
    whole = CellTypeProportions(lambdas=LAMBDAS, cv_max_spots=None).fit(sim.counts, sim.reference, sim.coords)
    assert window.report_["cv_spots"] == 200 and whole.report_["cv_spots"] == 400
    assert window.lambda_ == whole.lambda_ == 0.2  # under the smoothed weight rule (the LP rule chose 1.0 on both)
    np.testing.assert_array_equal(window.proportions_, whole.proportions_)
    assert rmse(window.proportions_, sim.proportions) < rmse(
        CellTypeProportions(lambda_smooth=0.0).fit(sim.counts, sim.reference, sim.coords).proportions_, sim.proportions)


def test_fold_fits_stop_after_cv_max_outer_rounds_and_choose_as_the_whole_alternation(spatial):
    """The path's fold fits stop after two V-step/w-step rounds (at large λ the weights of flat regions
    otherwise flip between equally good LP vertices for all 8 rounds): scores within 5e-4 per count, the same
    λ and the same final fit, which runs the alternation to the end."""
    sim = spatial
    capped = CellTypeProportions(lambdas=LAMBDAS).fit(sim.counts, sim.reference, sim.coords)
    whole = CellTypeProportions(lambdas=LAMBDAS, cv_max_outer=None).fit(sim.counts, sim.reference, sim.coords)
    assert capped.report_["cv_max_outer"] == 2
    assert capped.cv_["weight_changes"].max() <= 2 < whole.cv_["weight_changes"].max()
    assert capped.lambda_ == whole.lambda_
    np.testing.assert_allclose(capped.summary_of_choice()["mean"], whole.summary_of_choice()["mean"], rtol=0, atol=5e-4)
    np.testing.assert_array_equal(capped.proportions_, whole.proportions_)
    assert capped.report_["outer_iterations"] > 2  # the final fit is not capped
    with pytest.raises(S3RInputError, match="cv_max_outer"):
        CellTypeProportions(cv_max_outer=0).fit(sim.counts, sim.reference, sim.coords)


REAL = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


@pytest.mark.skipif(not (REAL / "hypothalamus_merfish.h5ad").is_file(), reason="../shared/data/real is absent")
def test_merfish_pseudo_spots_beat_nnls_by_a_fifth():
    """Real truth: 200 µm squares of plane 0.21, reference from plane 0.26 (benchmarks/README.md)."""
    import anndata
    from scipy.optimize import nnls

    from s3r.deconv.simulate import pseudo_spots

    adata = anndata.read_h5ad(REAL / "hypothalamus_merfish.h5ad")
    classes = adata.obs["Cell_class"].astype(str).str.replace(r" \d+$", "", regex=True).to_numpy()
    keep = ~np.isin(classes, ["Ambiguous", "Ependymal"])
    z, X = adata.obs["z"].to_numpy(), adata.X.tocsr()
    types = sorted(set(classes[keep]))
    reference = np.stack([np.asarray(X[keep & (z == 0.26) & (classes == t)].mean(axis=0)).ravel() for t in types])
    cells = keep & (z == 0.21)
    spots = pseudo_spots(adata.obsm["spatial"][cells], classes[cells], X[cells], 200.0, types=types)
    assert spots.counts.shape == (81, 161) and spots.fractions.sum(axis=1) == pytest.approx(1.0)
    baseline = np.array([nnls(reference.T, y)[0] for y in spots.counts])
    baseline /= baseline.sum(axis=1, keepdims=True)
    model = CellTypeProportions(lambda_smooth=0.0).fit(spots.counts, reference, spots.coords)
    assert model.report_["family"] == "nb"
    assert rmse(model.proportions_, spots.fractions) < 0.8 * rmse(baseline, spots.fractions)


def test_per_spot_fista_matches_cvxpy_without_a_spatial_term():
    """λ = 0 (no edges): the per-spot accelerated path reaches cvxpy's optimum with many similar types."""
    sim = simulate_counts(n_spots=25, n_types=8, n_genes=20, depth=150, seed=6)
    profiles, _ = profiles_from_reference(sim.reference, np.ones(20), 1e-3)
    scale = float(np.median(sim.counts.sum(axis=1)))
    term = CountTerm(torch.tensor(sim.counts.T.copy()), torch.tensor(profiles), scale=scale)
    none = Incidence(25, np.zeros((0, 2), dtype=np.int64), 8, torch.device("cpu"), torch.float64)
    start = torch.full((8, 25), 1 / 8, dtype=torch.float64)
    result = solve_proportions(term, start, none, torch.zeros(0, dtype=torch.float64), tol=1e-8, max_iter=50000)
    assert result.converged and result.dual.shape == (8, 0)

    V = cp.Variable((25, 8), nonneg=True)
    data = -cp.sum(cp.multiply(sim.counts, cp.log(V @ profiles))) / scale + float(term.constant.sum()) / scale
    problem = cp.Problem(cp.Minimize(data), [cp.sum(V, axis=1) == 1])
    problem.solve(solver="CLARABEL")
    assert result.objective == pytest.approx(problem.value, rel=1e-6)
    assert result.objective <= problem.value + 1e-6 * abs(problem.value)


@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_float32_fits_converge_to_the_float64_optimum(lam):
    """float32 rounding of the count loss must not read as a failed descent test (it once stalled every fit)."""
    sim = simulate_counts(n_spots=300, n_types=20, n_genes=300, depth=1000, seed=0)
    profiles, _ = profiles_from_reference(sim.reference, np.ones(300), 1e-4)
    edges = delaunay_graph(sim.coords).edges if lam > 0 else np.zeros((0, 2), dtype=np.int64)
    values = {}
    for dtype in (torch.float64, torch.float32):
        term = CountTerm(torch.tensor(sim.counts.T.copy(), dtype=dtype), torch.tensor(profiles, dtype=dtype),
                         scale=float(np.median(sim.counts.sum(axis=1))))
        incidence = Incidence(300, edges, 20, torch.device("cpu"), dtype)
        costs = torch.full((len(edges),), lam, dtype=dtype)
        result = solve_proportions(term, torch.full((20, 300), 0.05, dtype=dtype), incidence, costs, tol=1e-3, max_iter=3000)
        assert result.converged, (dtype, result.primal_residual, result.dual_residual, result.gap)
        values[dtype] = result.objective
    assert values[torch.float32] == pytest.approx(values[torch.float64], rel=1e-4)


def test_the_path_runs_on_one_thread_and_gives_the_thread_count_back(monkeypatch):
    """The λ path's small fold fits run single-threaded; the final fit gets the caller's threads again."""
    import s3r.deconv.lambda_path as lambda_path

    sim = simulate_counts(n_spots=120, spatial=True, seed=2)
    seen = []
    inner = lambda_path.cross_validate
    monkeypatch.setattr(lambda_path, "cross_validate", lambda *a: seen.append(torch.get_num_threads()) or inner(*a))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        CellTypeProportions(lambdas=(0.0, 0.2)).fit(sim.counts, sim.reference, sim.coords)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
