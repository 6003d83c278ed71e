"""The per-fit report: the feature table's numbers, planted features leading, files, determinism, bad input."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from helpers import tuned_fit
from s3r.errors import S3RInputError
from s3r.report.fit_report import feature_table, fit_report, fit_reports, fold_selection

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_fit")
    sim, model, best = tuned_fit(root, "five_regions", {"n_trials": 4, "rounds": 2, "folds": 3},
                                 params={"lambda_smooth": 0.05, "alpha": 0.005, "beta": 0.01})
    return sim, model, root, best


def test_feature_table_numbers_are_the_coefficients_summaries():
    W = np.array([[0.0, 2.0, 0.0, -1.0], [0.0, -4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    table = feature_table(W, ["a", "b", "c", "d"], (np.array([0, 5, 0, 2]), 5))
    assert table["feature"].tolist() == ["b", "d"]  # never-selected a, c left out; strongest first
    assert table["mean_abs_coef"].tolist() == [2.0, 4.0 / 3.0]
    assert table["share_nonzero"].tolist() == [2 / 3, 2 / 3]
    assert table["max_abs_coef"].tolist() == [4.0, 3.0]
    assert table["folds_selected"].tolist() == [5, 2] and table["n_folds"].tolist() == [5, 5]
    assert feature_table(W, list("abcd"))["folds_selected"].isna().all()


def test_report_files_contents_and_planted_features_lead(fitted):
    sim, model, root, best = fitted
    files = fit_report(root / "fit", root / "report", tune_dir=root / "tune", title="sim / target")
    expected = {"features", "coefficient_maps", "domains", "heatmap", "convergence", "observed_vs_predicted",
                "tuning_history", "tuning_parameters", "tuning_folds", "trials"}
    assert set(files) == expected
    for name, path in files.items():
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC, name
            assert path.with_suffix(".svg").read_text().lstrip().startswith("<?xml"), name
    table = pd.read_csv(files["features"], sep="\t")
    W = model.coef_
    names = sim.feature_names
    for _, row in table.iterrows():
        j = names.index(row["feature"])
        assert row["mean_abs_coef"] == pytest.approx(np.abs(W[:, j]).mean(), rel=1e-12)
        assert row["share_nonzero"] == pytest.approx((W[:, j] != 0).mean(), rel=1e-12)
    assert len(table) == int(np.any(W != 0, axis=0).sum())
    planted = {names[j] for support in sim.informative.values() for j in support}
    assert set(table["feature"].head(5)) <= planted
    # stability: the chosen trial's per-fold solutions, counted independently here
    counts, n_folds = fold_selection(root / "tune", names)
    assert n_folds == 3 and table["n_folds"].eq(3).all()
    assert table["folds_selected"].tolist() == [int(counts[names.index(f)]) for f in table["feature"]]
    domains = pd.read_csv(files["domains"], sep="\t")
    assert domains["spot"].tolist() == sim.spot_ids and domains["domain"].str.fullmatch(r"D\d+").all()
    trials = pd.read_csv(files["trials"], sep="\t")
    assert trials["number"].tolist() == list(range(4))
    assert int(trials.loc[trials["cv_loss"].idxmin(), "number"]) == best["best_trial"]
    chosen = trials.loc[trials["number"] == best["trial"], "cv_loss"].item()  # the one-SE choice
    assert chosen == pytest.approx(best["cv_loss"]) and chosen >= trials["cv_loss"].min()


def test_report_is_byte_identical_on_rerun(fitted, tmp_path):
    _, _, root, _ = fitted
    first = fit_report(root / "fit", tmp_path / "a", tune_dir=root / "tune")
    second = fit_report(root / "fit", tmp_path / "b", tune_dir=root / "tune")
    for name in first:
        assert first[name].read_bytes() == second[name].read_bytes(), name
        if first[name].suffix == ".png":
            assert first[name].with_suffix(".svg").read_bytes() == second[name].with_suffix(".svg").read_bytes(), name


def test_a_chunks_reports_in_two_processes_are_the_same_files_as_in_one(fitted, tmp_path):
    """The workflow's report job draws its chunk's targets in worker processes: the same files, byte for byte, with
    each target's tuning found (or not: a directory without rounds is reported as untuned)."""
    _, _, root, _ = fitted
    for name in ("t1", "t2", "t3"):
        shutil.copytree(root / "fit", tmp_path / "fits" / name)
    (tmp_path / "tune").mkdir()
    for name in ("t1", "t3"):
        shutil.copytree(root / "tune", tmp_path / "tune" / name)
    (tmp_path / "tune" / "t2").mkdir()  # tuning off for this target: best_params.json only, no rounds
    for processes, out in ((1, "one"), (2, "two")):
        fit_reports(tmp_path / "fits", tmp_path / out, ["t1", "t2", "t3"], tune_dir=tmp_path / "tune", title_prefix="s / ",
                    processes=processes, vector=None)
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    two = sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    assert one == two and len(one) > 20
    assert all((tmp_path / "one" / p).read_bytes() == (tmp_path / "two" / p).read_bytes() for p in one)
    assert (tmp_path / "two" / "t1" / "trials.tsv").is_file() and not (tmp_path / "two" / "t2" / "trials.tsv").exists()


def test_without_kept_states_stability_is_na_not_invented(fitted, tmp_path):
    _, _, root, _ = fitted
    tune_copy = tmp_path / "tune"
    shutil.copytree(root / "tune", tune_copy)
    for state in tune_copy.glob("round_*/fold_*.npz"):
        state.unlink()
    files = fit_report(root / "fit", tmp_path / "out", tune_dir=tune_copy)
    table = pd.read_csv(files["features"], sep="\t", keep_default_na=False)
    assert (table["folds_selected"] == "NA").all() and (table["n_folds"] == "NA").all()


def test_bad_directories_name_the_path_and_the_fix(fitted, tmp_path):
    _, _, root, _ = fitted
    with pytest.raises(S3RInputError, match=r"fit\.json: not found; --fit must be a directory written by 's3r fit'"):
        fit_report(tmp_path, tmp_path / "out")
    empty_tune = tmp_path / "tune"
    empty_tune.mkdir()
    (empty_tune / "best_params.json").write_text(json.dumps({"lambda_smooth": 0.1, "alpha": 0.1, "beta": 0.1}))
    with pytest.raises(S3RInputError, match=r"no round_\*/results\.json; --tune must be a directory written by 's3r tune'"):
        fit_report(root / "fit", tmp_path / "out", tune_dir=empty_tune)


def test_prediction_from_data_matches_the_model_whatever_the_order(fitted):
    """Given the input data (spots and features shuffled), ŷ is recomputed from the stored coefficients."""
    from s3r.io import RegressionData
    from s3r.report.fit_report import load_fit, observed_and_predicted

    sim, model, root, _ = fitted
    fit = load_fit(root / "fit")
    rng = np.random.default_rng(1)
    rows, cols = rng.permutation(sim.n_spots), rng.permutation(len(sim.feature_names))
    data = RegressionData(sim.X[np.ix_(rows, cols)], sim.y[rows], sim.coords[rows], [sim.spot_ids[i] for i in rows],
                          [sim.feature_names[j] for j in cols], "target")
    observed, predicted = observed_and_predicted(fit, data)
    np.testing.assert_array_equal(observed, sim.y)
    np.testing.assert_allclose(predicted, model.predict(sim.X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(predicted, fit.fitted, rtol=0, atol=1e-12)  # what write_fit stored
    short = RegressionData(sim.X[:, 1:], sim.y, sim.coords, sim.spot_ids, sim.feature_names[1:], "target")
    with pytest.raises(S3RInputError, match=rf"X\.csv: lacks feature\(s\) '{sim.feature_names[0]}' of the fit; pass the data the fit was run on"):
        observed_and_predicted(fit, short, source="X.csv")
    few = RegressionData(sim.X[1:], sim.y[1:], sim.coords[1:], sim.spot_ids[1:], sim.feature_names, "target")
    with pytest.raises(S3RInputError, match=rf"1 of the fit's {sim.n_spots} spots are missing \(e\.g\. '{sim.spot_ids[0]}'\)"):
        observed_and_predicted(fit, few)


def test_observed_vs_predicted_from_data_for_a_fit_without_stored_values(fitted, tmp_path):
    """Older fit directories lack observed/fitted: the figure comes only when the data are given."""
    from s3r.io import RegressionData

    sim, _, root, _ = fitted
    old = tmp_path / "fit"
    shutil.copytree(root / "fit", old)
    with np.load(old / "coefficients.npz") as f:
        arrays = {key: f[key] for key in f.files if key not in ("observed", "fitted")}
    np.savez_compressed(old / "coefficients.npz", **arrays)
    assert "observed_vs_predicted" not in fit_report(old, tmp_path / "without")
    data = RegressionData(sim.X, sim.y, sim.coords, sim.spot_ids, sim.feature_names, "target")
    files = fit_report(old, tmp_path / "with", data=data)
    assert files["observed_vs_predicted"].read_bytes()[:8] == PNG_MAGIC
    # same values as the stored ones → the same picture as the report of the complete fit directory
    stored = fit_report(root / "fit", tmp_path / "stored")
    assert files["observed_vs_predicted"].read_bytes() == stored["observed_vs_predicted"].read_bytes()


def test_coefficient_maps_keep_their_old_name_and_take_a_fit_directory(fitted, tmp_path):
    from s3r.report import plot_coefficient_maps

    _, _, root, _ = fitted
    paths = plot_coefficient_maps(root / "fit", tmp_path / "maps.png", max_features=2)
    assert paths["png"].read_bytes()[:8] == PNG_MAGIC and paths["svg"].read_text().lstrip().startswith("<?xml")
    with pytest.raises(S3RInputError, match=r"fit\.json: not found"):
        plot_coefficient_maps(tmp_path, tmp_path / "x.png")


def test_convergence_plot_of_a_flat_all_zero_fit(tmp_path):
    """An all-zero fit has a constant objective and, at W = 0, an unscaled dual residual: the plot must still draw."""
    from types import SimpleNamespace

    from s3r.report.convergence import plot_convergence

    trace = [{"iteration": 10 * (i + 1), "objective": [1.0], "primal_residual": [0.0 if i else 1e-7], "dual_residual": [10.0 ** (280 - 20 * i)]}
             for i in range(8)]
    fit = SimpleNamespace(report={"trace": trace, "tol": 1e-5, "converged": True, "iterations": 80, "solve_seconds": 0.1})
    out = plot_convergence(fit, tmp_path / "convergence.png")
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_fused_map_is_called_constant_in_words_not_drawn_as_a_pattern():
    """Real lymph node, C3 at its tuned λ: every coefficient map was one value over all 1,000 spots, drawn in full
    colour like a domain map. The titles give that value and the heading names the maps a global effect."""
    from s3r.report.fit_report import map_labels, spatially_constant

    rng = np.random.default_rng(0)
    fused = np.column_stack([np.full(50, 0.29), np.full(50, -0.16), np.zeros(50)])
    labels, heading = map_labels(fused, ["VSMC", "B_Plasma", "NK"], [0, 1], "C3", (True, "effect found"))
    assert labels == ["VSMC: +0.29 at every spot", "B_Plasma: -0.16 at every spot"]
    assert heading == "C3\nevery map is spatially constant: a global effect of the features, no spatial variation at the chosen λ"
    varying = fused.copy()
    varying[:25, 1] += 0.05 + rng.normal(0, 1e-3, 25)
    labels, heading = map_labels(varying, ["VSMC", "B_Plasma", "NK"], [0, 1], "C3", (True, "effect found"))
    assert labels == ["VSMC: +0.29 at every spot", "B_Plasma (non-zero at 100%)"] and heading == "C3"
    _, heading = map_labels(fused, ["VSMC", "B_Plasma", "NK"], [0, 1], "C3", (False, "no effect"))
    assert heading.startswith("NO EFFECT FOUND: C3")
    assert spatially_constant(np.full(10, 3.0) + 1e-9) and not spatially_constant(np.r_[np.full(9, 3.0), 3.01])
    # float32 rounding of a fused map (DLPFC TAC1's OLIG1: -0.0026546 … -0.0026546, spread 3e-6 of its size) is constant
    assert spatially_constant(np.r_[np.full(9, -0.0026546564), -0.0026546481]) and not spatially_constant(np.r_[np.full(9, 3.0), 3.001])


def test_a_fit_with_no_recorded_checkpoint_says_so_in_words(tmp_path, monkeypatch):
    """An intercept-only final model (every coefficient zero, certified without a solve) has no trace: its
    convergence figure said "converged before the first checkpoint" inside two empty 0–1 axes. Now words, no axes."""
    from types import SimpleNamespace

    import matplotlib.figure

    from s3r.report import convergence as fr

    texts = []
    real = matplotlib.figure.Figure.text
    monkeypatch.setattr(matplotlib.figure.Figure, "text", lambda self, x, y, s, **kw: texts.append(s) or real(self, x, y, s, **kw))
    report = {"trace": [], "tol": 1e-5, "converged": True, "iterations": 0, "solve_seconds": 0.01, "selected_features": 0,
              "primal_residual": 0.0, "dual_residual": 0.0}
    out = fr.plot_convergence(SimpleNamespace(report=report), tmp_path / "zero.png", vector=None)
    assert out["png"].read_bytes()[:8] == PNG_MAGIC
    assert texts[0] == "solver: converged in 0 iterations, 0.01 s"
    assert texts[1] == ("no iterations: the start already satisfied the optimality conditions\n"
                        "(every coefficient zero, certified without a solve)\nprimal residual 0, dual residual 0 (tolerance 1e-05)")
    texts.clear()
    fr.plot_convergence(SimpleNamespace(report={**report, "iterations": 7, "selected_features": 3, "dual_residual": 4e-6}),
                        tmp_path / "early.png", vector=None)
    assert texts[1] == "converged in 7 iterations, before the first recorded checkpoint\nprimal residual 0, dual residual 4e-06 (tolerance 1e-05)"


def test_the_residual_curves_end_at_the_check_that_stopped_the_solve(tmp_path, monkeypatch):
    """KCNS1 in the 200-target run: the trace's last point (4,750 iterations) had the dual residual at 1.5e-5, above the
    1e-5 line, while the fit converged at the check at 4,760 (9.6e-6). The curves now end at that check."""
    from types import SimpleNamespace

    import matplotlib.axes

    from s3r.report.convergence import plot_convergence

    drawn = []
    real = matplotlib.axes.Axes.semilogy
    monkeypatch.setattr(matplotlib.axes.Axes, "semilogy", lambda self, x, y, **kw: drawn.append((list(x), list(y))) or real(self, x, y, **kw))
    trace = [{"iteration": 100 * (i + 1), "objective": [1.0 - 0.001 * i], "primal_residual": [1e-3 / 2**i], "dual_residual": [2e-3 / 2**i]}
             for i in range(8)]
    report = {"trace": trace, "tol": 1e-5, "converged": True, "iterations": 810, "solve_seconds": 0.1, "objective": 0.99,
              "primal_residual": 4e-6, "dual_residual": 9e-6}
    plot_convergence(SimpleNamespace(report=report), tmp_path / "c.png", vector=None)
    (x_p, y_p), (x_d, y_d) = drawn
    assert x_p == x_d == [100 * (i + 1) for i in range(8)] + [810]
    assert y_p[-1] == 4e-6 and y_d[-1] == 9e-6 and y_d[-2] == 2e-3 / 2**7
    drawn.clear()
    plot_convergence(SimpleNamespace(report={**report, "iterations": 800}), tmp_path / "d.png", vector=None)
    assert drawn[0][0][-1] == 800 and len(drawn[0][0]) == 8  # the last checkpoint is the stopping check: nothing added
