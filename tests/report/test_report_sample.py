"""Per-sample and per-batch reports: spatial domains, coefficient programmes, deconvolution maps, batch summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from s3r.errors import S3RInputError
from s3r.report.domains import domain_table, spot_domains, stack_coefficients
from s3r.report.programmes import (
    clustered_heatmap,
    coefficient_summary,
    membership_table,
    programme_scores,
    programmes,
)
from s3r.simulate import simulate

PNG = b"\x89PNG\r\n\x1a\n"


def decoded(path) -> np.ndarray:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG, path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01, f"{path} is blank"
    return image


# ---------------------------------------------------------------------------------------------------------
# Domains
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["three_regions", "four_quadrants", "five_regions"])
def test_domains_recover_planted_regions_with_k_by_silhouette(layout):
    sim = simulate(layout, n_features=30, seed=1)
    noisy = sim.W + np.random.default_rng(0).normal(scale=8.0, size=sim.W.shape)  # coefficients span ±30..60
    labels, k, silhouette = spot_domains(noisy)
    assert k == sim.n_regions
    assert sorted(silhouette) == list(range(2, 9)) and max(silhouette, key=silhouette.get) == k
    assert adjusted_rand_score(sim.regions, labels) > 0.95
    # domains are numbered by decreasing size, and the result does not change between calls
    sizes = np.bincount(labels)
    assert (np.diff(sizes) <= 0).all()
    again, _, _ = spot_domains(noisy)
    np.testing.assert_array_equal(labels, again)


def test_domains_with_fixed_k_and_stacked_targets():
    sim = simulate("three_regions", n_features=30, seed=2)
    # a second target on a 1000x larger scale must not outweigh the first: each block is scaled to unit RMS
    stacked = stack_coefficients([sim.W, 1000.0 * np.roll(sim.W, 1, axis=1)])
    assert np.sqrt(np.mean(stacked[:, :30] ** 2)) == pytest.approx(1.0)
    assert np.sqrt(np.mean(stacked[:, 30:] ** 2)) == pytest.approx(1.0)
    labels, k, silhouette = spot_domains(stacked, k=3)
    assert k == 3 and list(silhouette) == [3]
    assert adjusted_rand_score(sim.regions, labels) == pytest.approx(1.0)


def test_domains_without_spatial_variation_are_one_domain():
    labels, k, silhouette = spot_domains(np.zeros((50, 4)))
    assert k == 1 and silhouette == {} and not labels.any()
    constant = np.tile([1.0, -2.0, 0.0], (40, 1))
    assert spot_domains(constant)[1] == 1
    with pytest.raises(S3RInputError, match="only 1 distinct"):
        spot_domains(constant, k=2)
    with pytest.raises(S3RInputError, match="NaN/inf"):
        spot_domains(np.full((5, 2), np.nan))


def test_outlier_spots_are_not_domains_but_a_small_region_is():
    """A nearly constant map with a few outlier spots: every k splits off single spots (silhouette near 1), so the
    answer is one domain; a real region of 5 % of the spots is still found, and a fixed k is taken as asked."""
    rng = np.random.default_rng(0)
    W = np.tile([0.07, 0.05, 0.0], (2000, 1)) + 1e-4 * rng.normal(size=(2000, 3))
    W[rng.choice(2000, 4, replace=False)] += [[0.9, 0, 0], [0, 0.8, 0], [0, 0, 1.1], [0.5, 0.5, 0]]
    labels, k, silhouette = spot_domains(W)
    assert k == 1 and not labels.any() and max(silhouette.values()) > 0.9
    region = W.copy()
    region[:100, 2] += 0.3  # 5 % of the spots
    labels, k, silhouette = spot_domains(region)  # without the size rule: k = 5, the outliers split off (0.9974)
    assert k == 2 and adjusted_rand_score(np.arange(2000) < 100, labels) > 0.95 and max(silhouette, key=silhouette.get) > 2
    assert spot_domains(W, k=3)[1] == 3


def test_domain_table_names_domains_from_one():
    table = domain_table(["a", "b", "c"], np.array([1, 0, 1]))
    assert table.to_dict("list") == {"spot": ["a", "b", "c"], "domain": ["D2", "D1", "D2"]}


# ---------------------------------------------------------------------------------------------------------
# Programmes
# ---------------------------------------------------------------------------------------------------------

PROFILES = {  # planted programmes: direction across 4 targets
    "P_up_ab": [1.0, 1.0, 0.0, 0.0],
    "P_cd": [0.0, 0.0, 1.0, -1.0],
    "P_mixed": [-1.0, 0.5, 0.0, 1.0],
}


def planted_matrix(seed=0) -> tuple[pd.DataFrame, dict[str, str]]:
    rng = np.random.default_rng(seed)
    rows, truth = {}, {}
    names = list(PROFILES)
    for j in range(18):
        prog = names[j % 3]
        rows[f"f{j:02d}"] = np.asarray(PROFILES[prog]) * rng.uniform(0.3, 3.0) + rng.normal(scale=0.03, size=4)
        truth[f"f{j:02d}"] = prog
    rows["never_1"] = np.zeros(4)
    rows["never_2"] = np.zeros(4)
    return pd.DataFrame(rows, index=list("abcd")).T, truth


def test_programmes_recover_planted_structure_whatever_the_strength():
    matrix, truth = planted_matrix()
    result = programmes(matrix)
    assert result.n_programmes == 3
    found = result.labels.drop(["never_1", "never_2"])
    # the same partition as planted (names are ours: P1.. in dendrogram order)
    pairs = {(truth[f], found[f]) for f in found.index}
    assert len(pairs) == 3 and len({p for p, _ in pairs}) == 3 and len({q for _, q in pairs}) == 3
    assert (result.labels[["never_1", "never_2"]] == "P0").all()
    assert programmes(matrix, n_programmes=2).n_programmes == 2


def test_membership_table_and_scores_are_exact():
    matrix = pd.DataFrame(
        {"t1": [2.0, 1.0, 0.0, -1.0, -3.0], "t2": [0.0, 0.0, 0.0, 1.0, 3.0]},
        index=["a", "b", "zero", "c", "d"],
    )
    result = programmes(matrix)
    # a and b point along +t1; c and d along (-1, 1); "zero" is never selected
    assert result.labels.to_dict() == {"a": result.labels["a"], "b": result.labels["a"], "zero": "P0",
                                       "c": result.labels["c"], "d": result.labels["c"]}
    assert {result.labels["a"], result.labels["c"]} == {"P1", "P2"}
    table = membership_table(result.labels, result.leaves)
    first = table["feature"].iloc[0]
    expected_order = (["a", "b"] if first in "ab" else ["c", "d"])
    assert set(table["feature"].iloc[:2]) == set(expected_order)
    assert table["programme"].tolist() == ["P1", "P1", "P2", "P2", "P0"]
    assert table["feature"].iloc[-1] == "zero"
    scores = programme_scores(matrix, result.labels)
    ab, cd = result.labels["a"], result.labels["c"]
    assert scores.loc[ab].tolist() == [2, 1.5, 0.0] and scores.loc[cd].tolist() == [2, -2.0, 2.0]
    assert list(scores.columns) == ["n_features", "t1", "t2"] and list(scores.index) == ["P1", "P2"]


def test_coefficient_summary_is_the_signed_mean_over_spots():
    W1 = np.array([[1.0, -2.0], [3.0, 0.0]])
    W2 = np.array([[0.0, 4.0], [0.0, -4.0]])
    mean = coefficient_summary({"y1": W1, "y2": W2}, ["f", "g"])
    assert mean.to_dict() == {"y1": {"f": 2.0, "g": -1.0}, "y2": {"f": 0.0, "g": 0.0}}
    assert coefficient_summary({"y2": W2}, ["f", "g"], statistic="mean_abs")["y2"].tolist() == [0.0, 4.0]
    with pytest.raises(S3RInputError, match="same features"):
        coefficient_summary({"y1": W1, "y3": np.zeros((2, 3))}, ["f", "g"])


def test_clustered_heatmap_writes_png_and_svg_deterministically(tmp_path):
    matrix, _ = planted_matrix()
    result = programmes(matrix)
    first = clustered_heatmap(matrix, tmp_path / "a.png", title="programmes", row_clusters=result.labels)
    second = clustered_heatmap(matrix, tmp_path / "b.png", title="programmes", row_clusters=result.labels)
    assert set(first) == {"png", "svg"} and first["svg"].read_text().lstrip().startswith("<?xml")
    decoded(first["png"])
    assert first["png"].read_bytes() == second["png"].read_bytes()
    # the perturb-seq mode's use: perturbations x genes with gene programmes on the columns, no centring
    wide = pd.DataFrame(np.random.default_rng(1).normal(size=(6, 120)), index=[f"KO{i}" for i in range(6)],
                        columns=[f"g{j}" for j in range(120)])
    genes = pd.Series([f"P{j % 4 + 1}" for j in range(120)], index=wide.columns)
    paths = clustered_heatmap(wide, tmp_path / "wide.png", center_zero=False, col_clusters=genes)
    decoded(paths["png"])
    with pytest.raises(S3RInputError, match="col_clusters has 3 labels for 120 cols"):
        clustered_heatmap(wide, tmp_path / "bad.png", col_clusters=["x", "y", "z"])


# ---------------------------------------------------------------------------------------------------------
# The per-sample report from fit outputs
# ---------------------------------------------------------------------------------------------------------


def write_fake_fit(folder, W, coords, spots, features):
    from s3r.io import write_npz

    folder.mkdir(parents=True, exist_ok=True)
    write_npz(folder / "coefficients.npz", coef=W, coords=coords, spot_ids=np.asarray(spots),
              feature_names=np.asarray(features))
    return folder / "coefficients.npz"


def test_intercept_only_fits_leave_the_domains_unchanged_and_the_programmes(tmp_path):
    """A "no effect" target's intercept-only fit (every coefficient zero) carries no domain or programme information:
    the domains are those of the targets with an effect, and the programmes cluster only those."""
    from s3r.report.sample import sample_report

    sim = simulate("three_regions", n_features=12, seed=3)
    zero = np.zeros_like(sim.W)
    alone = sample_report({"y1": write_fake_fit(tmp_path / "a" / "y1", sim.W, sim.coords, sim.spot_ids, sim.feature_names)},
                          tmp_path / "alone")
    npz = {"y1": write_fake_fit(tmp_path / "y1", sim.W, sim.coords, sim.spot_ids, sim.feature_names),
           "null": write_fake_fit(tmp_path / "null", zero, sim.coords, sim.spot_ids, sim.feature_names)}
    both = sample_report(npz, tmp_path / "both")
    assert (pd.read_csv(both["domains_tsv"], sep="\t")["domain"] == pd.read_csv(alone["domains_tsv"], sep="\t")["domain"]).all()
    assert list(pd.read_csv(both["coefficient_summary"], sep="\t", index_col=0).columns) == ["y1"]
    # no target with an effect: one domain, and every target in the (empty) programme matrix
    none = sample_report({"null": npz["null"]}, tmp_path / "none")
    assert pd.read_csv(none["domains_tsv"], sep="\t")["domain"].nunique() == 1
    assert list(pd.read_csv(none["coefficient_summary"], sep="\t", index_col=0).columns) == ["null"]


def test_sample_report_writes_domains_and_programmes(tmp_path):
    from s3r.report.sample import sample_report

    sim = simulate("three_regions", n_features=12, seed=3)
    rng = np.random.default_rng(0)
    npz = {
        "y1": write_fake_fit(tmp_path / "y1", sim.W + (sim.W != 0) * rng.normal(scale=5, size=sim.W.shape), sim.coords,
                             sim.spot_ids, sim.feature_names),
        "y2": write_fake_fit(tmp_path / "y2", -sim.W, sim.coords, sim.spot_ids, sim.feature_names),
    }
    paths = sample_report(npz, tmp_path / "out", title="s")
    domains = pd.read_csv(paths["domains_tsv"], sep="\t")
    assert domains["spot"].tolist() == sim.spot_ids
    assert adjusted_rand_score(sim.regions, domains["domain"]) > 0.95
    summary = pd.read_csv(paths["coefficient_summary"], sep="\t", index_col=0)
    np.testing.assert_allclose(summary["y2"], -sim.W.mean(axis=0))
    members = pd.read_csv(paths["programmes_tsv"], sep="\t")
    assert sorted(members["feature"]) == sorted(sim.feature_names)
    informative = {j for js in sim.informative.values() for j in js}
    never = sorted(sim.feature_names[j] for j in range(12) if j not in informative)
    assert sorted(members.loc[members["programme"] == "P0", "feature"]) == never
    for key in ("domains_png", "programmes_png"):
        decoded(paths[key])
    bad = write_fake_fit(tmp_path / "y3", sim.W[:, :5], sim.coords, sim.spot_ids, sim.feature_names[:5])
    with pytest.raises(S3RInputError, match="its features differ"):
        sample_report({**npz, "y3": bad}, tmp_path / "bad")


# ---------------------------------------------------------------------------------------------------------
# Deconvolution maps
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def deconv_outputs(tmp_path):
    """A deconvolution output directory in the layout 's3r deconvolve' writes, from the simulation's truth."""
    from s3r.deconv import simulate_deconvolution
    from s3r.graph import delaunay_graph

    sim = simulate_deconvolution("dlpfc_151673", n_spots=200, n_cell_types=4, seed=2)
    folder = tmp_path / "deconv"
    folder.mkdir()
    pd.DataFrame(sim.proportions, index=pd.Index(sim.spot_ids, name="spot"), columns=sim.cell_types).to_csv(
        folder / "proportions.csv"
    )
    edges = delaunay_graph(sim.coords).edges
    ids = np.asarray(sim.spot_ids, dtype=object)
    weight = np.where(sim.regions[edges[:, 0]] == sim.regions[edges[:, 1]], 1.0, 0.05)
    pd.DataFrame({"spot_a": ids[edges[:, 0]], "spot_b": ids[edges[:, 1]], "weight": weight}).to_csv(
        folder / "edge_weights.csv", index=False
    )
    return folder, sim


def test_deconvolution_report_files(deconv_outputs, tmp_path):
    from s3r.report.deconvolution import deconvolution_report

    folder, sim = deconv_outputs
    coords = pd.DataFrame(sim.coords, index=sim.spot_ids).iloc[::-1]  # any spot order: aligned by id
    paths = deconvolution_report(folder, tmp_path / "out", coords=coords, title="tissue")
    assert {k for k in paths if k.endswith("_png")} == {"proportions_png", "regions_png", "edge_weights_png"}
    for key in ("proportions_png", "regions_png", "edge_weights_png"):
        decoded(paths[key])
        assert paths[key].with_suffix(".svg").is_file()
    regions = pd.read_csv(paths["regions_csv"])
    expected = np.asarray(sim.cell_types)[np.argmax(sim.proportions, axis=1)]
    assert regions["spot"].tolist() == sim.spot_ids and regions["dominant"].tolist() == expected.tolist()
    np.testing.assert_allclose(regions["proportion"], sim.proportions.max(axis=1))

    (folder / "edge_weights.csv").write_text("spot_a,spot_b,weight\nspot_x,spot_1,0.5\n")
    with pytest.raises(S3RInputError, match="names a spot not in proportions.csv"):
        deconvolution_report(folder, tmp_path / "o2", coords=coords)
    with pytest.raises(S3RInputError, match="without coordinates"):
        deconvolution_report(folder, tmp_path / "o3", coords=coords.iloc[:10])


# ---------------------------------------------------------------------------------------------------------
# Batch summary
# ---------------------------------------------------------------------------------------------------------


def test_summary_table_exact_contents(tmp_path):
    from s3r.report.summary import COLUMNS, summarise_fits

    def fit(sample, target, selected, converged):
        folder = tmp_path / "fits" / sample / target
        folder.mkdir(parents=True)
        W = np.zeros((3, 3))
        W[:, 2], W[0, 0] = 5.0, -1.0  # feature "c" strongest, then "a"; "b" never selected
        write_fake_fit(folder, W, np.zeros((3, 2)), ["s1", "s2", "s3"], ["a", "b", "c"])
        doc = {"target": target, "n_spots": 3, "n_features": 3, "selected_features": selected, "nonzero_fraction": 0.5,
               "r2": 0.9, "objective": 1.5, "converged": converged, "iterations": 40, "solve_seconds": 0.25,
               "device": "cpu", "parameters": {"graph": "knn", "smooth": "tv", "lambda_smooth": 0.1, "alpha": 0.2,
                                                "beta": 0.3},
               "extra": {"sample": sample, "params_source": "tune"}}
        (folder / "fit.json").write_text(json.dumps(doc))
        return folder / "fit.json"

    fits = [fit("s2", "y", 2, True), fit("s1", "y", 1, False)]
    params = tmp_path / "p2.json", tmp_path / "p1.json"
    params[0].write_text(json.dumps({"sample": "s2", "target": "y", "source": "tune",
                                     "tuning": {"cv_loss": 0.5, "cv_se": 0.05, "trial": 3, "n_trials": 6, "null_cv_loss": 0.9,
                                                "effect_found": True, "verdict": "the features explain the target"}}))
    params[1].write_text(json.dumps({"cv_loss": 0.7, "cv_se": None, "trial": 0, "n_trials": 4, "null_cv_loss": 0.69, "trend_cv_loss": 0.6,
                                     "effect_found": False, "verdict": "no spatially varying effect of the features found: ..."}))  # s3r tune's layout
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps({"sample": "s1", "n_edges": 10, "n_components": 1}))
    table = summarise_fits(fits, [graph], params)
    assert list(table.columns) == COLUMNS
    row = table.iloc[0].to_dict()
    assert pd.isna(row.pop("cv_se"))  # s3r tune had one fold spread: none
    assert row == {
        "sample": "s1", "target": "y", "n_spots": 3, "n_features": 3, "graph": "knn", "n_edges": 10,
        "graph_components": 1, "smooth": "tv", "lambda_smooth": 0.1, "alpha": 0.2, "beta": 0.3,
        "params_source": "tune", "cv_loss": 0.7, "null_cv_loss": 0.69, "trend_cv_loss": 0.6, "trial": 0, "n_trials": 4, "effect_found": False,
        "verdict": "no spatially varying effect of the features found: ...", "selected_features": 1,
        "top_features": "c,a", "nonzero_fraction": 0.5, "r2": 0.9, "objective": 1.5, "converged": False,
        "iterations": 40, "solve_seconds": 0.25, "device": "cpu",
    }
    assert table["sample"].tolist() == ["s1", "s2"] and table["cv_loss"].tolist() == [0.7, 0.5]
    assert table["effect_found"].tolist() == [False, True]  # the verdict in words, beside the numbers
    assert pd.isna(table.loc[1, "n_edges"])  # no graph summary for s2

    with pytest.raises(S3RInputError, match="parameters for sample 's2', but .* is sample 's1'"):
        summarise_fits(fits[::-1], [graph], params)
    with pytest.raises(S3RInputError, match="2 parameter files for 1 fits"):
        summarise_fits(fits[:1], [], params)
    # the workflow names each fit's parameter file: any order pairs the same
    by_pair = {("s1", "y"): params[1], ("s2", "y"): params[0]}
    assert summarise_fits(fits[::-1], [graph], by_pair).equals(table)
    with pytest.raises(S3RInputError, match="no parameter file for sample 's1', target 'y'"):
        summarise_fits(fits, [graph], {("s2", "y"): params[0]})
    # a Visium section's graph names its lattice in the table
    graph.write_text(json.dumps({"sample": "s1", "n_edges": 10, "n_components": 1, "lattice": "hexagonal, 6 neighbours"}))
    assert summarise_fits(fits, [graph], params).loc[0, "graph"] == "knn (hexagonal, 6 neighbours)"
