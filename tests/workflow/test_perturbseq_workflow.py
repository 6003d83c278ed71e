"""The workflow's perturb-seq mode: planted effects recovered through the rule's library call, sheet checks,
QC covariates, and the rules in the workflow's plan (dry run) and, once, for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

from s3r.errors import S3RInputError
from s3r.perturb import qc_covariates, simulate_perturbseq_h5ad
from s3r.workflow.jobs import plot_screen, run_screen
from s3r.workflow.screens import read_perturbseq_sheet

from helpers import REPO
from helpers import snakemake as _snakemake
COVARIATES = ["batch", "pct_counts_mt", "total_counts", "S_score", "G2M_score"]
SETTINGS = {"family": "gaussian", "l1_ratio": 0.5, "alpha": None, "n_alphas": 20, "cv": 3, "n_top_genes": 2000,
            "n_programmes": None, "programme_threshold": 0.7, "seed": 0, "samples": "unused", "enabled": True}


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    path = tmp_path_factory.mktemp("screen") / "screen.h5ad"
    simulate_perturbseq_h5ad(path, n_cells=800, n_genes=120, n_perturbations=6, n_programmes=3, effect=1.0, seed=3,
                             gmt=path.with_suffix(".gmt"))
    return path


def _spec(path, **kw):
    ad = anndata.read_h5ad(path, backed="r")
    spec = {"h5ad": str(path), "perturbation_key": "perturbation", "control": "control", "covariates": COVARIATES, "layer": None,
            "genes": None, "s_genes": list(ad.uns["s_genes"]), "g2m_genes": list(ad.uns["g2m_genes"]), "gmt": str(Path(path).with_suffix(".gmt"))}
    ad.file.close()
    return {**spec, **kw}


def _outputs(d: Path) -> dict:
    from s3r.workflow.jobs import OUTPUT_TABLES

    return {k: d / ("perturbseq.json" if k == "summary" else f"{k}.tsv") for k in OUTPUT_TABLES}


@pytest.mark.parametrize("family", ["gaussian", "poisson"])
def test_run_screen_recovers_planted_effects_and_programmes(screen, tmp_path, family):
    spec = _spec(screen)
    out = _outputs(tmp_path)
    run_screen(spec, {**SETTINGS, "family": family}, outputs=out)
    truth = anndata.read_h5ad(screen)
    effects = pd.DataFrame(truth.varm["true_effects"].T, index=truth.uns["perturbations"], columns=truth.var_names)
    coef = pd.read_csv(out["coefficients"], sep="\t", index_col=0)
    assert coef.index.name == "perturbation" and list(coef.index) == list(effects.index)  # control is the baseline, not a row
    W, E = coef.loc[effects.index, effects.columns].to_numpy(), effects.to_numpy()
    hit = E != 0
    assert np.corrcoef(W.ravel(), E.ravel())[0, 1] > 0.95
    assert np.all(np.sign(W[hit]) == np.sign(E[hit])) and np.median(np.abs(W[hit] - E[hit])) < 0.2  # log fold changes
    # every planted programme is one inferred programme, and they are distinct
    labels = pd.read_csv(out["programmes"], sep="\t", index_col=0)["programme"]
    planted = truth.var["true_programme"]
    found = [set(labels[planted.index[planted == q]]) for q in (1, 2, 3)]
    assert all(len(f) == 1 for f in found) and len(set.union(*found)) == 3 and "P0" not in set.union(*found)
    assert set(labels) <= {f"P{j}" for j in range(len(labels))}  # one label spelling in every table: P<n>
    # programme scores: P_j moves its planted programme (j mod 3) by ±1, here up for P1..P3 and down for P4..P6
    # (exactly on the count scale; log1p of normalised expression compresses the decreases of low counts)
    scores = pd.read_csv(out["programme_scores"], sep="\t", index_col=0)
    for j in range(6):
        (label,) = found[j % 3]
        score, planted_score = scores.loc[f"P{j + 1}", label], (1.0 if j < 3 else -1.0)
        if family == "poisson":
            assert score == pytest.approx(planted_score, abs=0.25)  # the elastic net shrinks a little
        else:
            assert np.sign(score) == planted_score and abs(score) > 0.5
        others = scores.loc[f"P{j + 1}"].drop(label)
        assert np.abs(others).max() < 0.25 * abs(score)
    summary = json.loads(out["summary"].read_text())
    assert summary["n_perturbations"] == 6 and summary["n_genes"] == 120 and summary["model"]["family"] == family
    assert summary["covariates"] == ["batch=b1", "pct_counts_mt", "total_counts", "S_score", "G2M_score"]
    gene_scores = pd.read_csv(out["gene_scores"], sep="\t", index_col=0)
    assert gene_scores.loc[planted.index[planted > 0], "deviance_explained"].median() > 0.1
    # M beside W: covariates × genes with the intercept first; the cell-cycle scores computed from the gene lists
    # carry the planted cell cycle (S genes rise with S_score), and nothing else does
    M = pd.read_csv(out["covariate_coefficients"], sep="\t", index_col=0)
    assert list(M.index) == ["(intercept)", "batch=b1", "pct_counts_mt", "total_counts", "S_score", "G2M_score"]
    assert list(M.columns) == list(coef.columns)
    s_genes, g2m_genes = truth.uns["s_genes"], truth.uns["g2m_genes"]
    assert M.loc["S_score", s_genes].min() > 0.3 and M.loc["G2M_score", g2m_genes].min() > 0.3
    others = [g for g in M.columns if g not in set(s_genes) | set(g2m_genes)]
    assert np.median(np.abs(M.loc["S_score", others])) < 0.35 * M.loc["S_score", s_genes].median()  # controls: score noise
    # per-cell scores: every planted programme's inferred programme rises/falls in its perturbations' cells
    tests = pd.read_csv(out["programme_tests"], sep="\t").set_index(["perturbation", "programme"])
    for j in range(6):
        (label,) = found[j % 3]
        row = tests.loc[(f"P{j + 1}", label)]
        assert np.sign(row["mean_difference"]) == (1.0 if j < 3 else -1.0) and row["p_adj"] < 1e-10
    # enrichment in the demo GMT: each inferred programme is its planted set, decoys are not significant
    enr = pd.read_csv(out["enrichment"], sep="\t")
    for q in (1, 2, 3):
        (label,) = found[q - 1]
        top = enr[enr["programme"] == label].iloc[0]
        assert top["gene_set"] == f"PLANTED_{q}" and top["p_adj"] < 1e-10
    planted_progs = {next(iter(f)) for f in found}
    assert set(scores.columns) == set(tests.reset_index()["programme"]) == set(summary["programme_sizes"]) - {"P0"}
    decoys = enr[enr["gene_set"].str.startswith("DECOY") & enr["programme"].isin(planted_progs)]
    assert len(decoys) == 15 and (decoys["p_adj"] > 0.05).all()
    cells = pd.read_csv(out["cell_scores"], sep="\t", index_col=0)
    assert np.corrcoef(cells["S_score"], truth.obs["true_S"])[0, 1] > 0.5
    assert summary["n_cells"] == 800 and set(summary["module_sizes"]) == {"M1", "M2", "M3", "M4", "M5", "M6"}


def test_heatmaps_from_the_tables(screen, tmp_path):
    pytest.importorskip("s3r.report.programmes")
    spec = _spec(screen, covariates=["batch"], genes=[f"gene_{j}" for j in range(1, 31)])
    out = _outputs(tmp_path)
    run_screen(spec, {**SETTINGS, "cv": 3, "n_alphas": 5}, outputs=out)
    figs = {k: tmp_path / f"{k}.png" for k in ("coefficients_png", "scores_png", "shifts_png", "dotplot_png", "alpha_png", "enrichment_png")}
    plot_screen(**{k: out[k] for k in ("coefficients", "programmes", "modules", "programme_scores", "programme_tests", "alpha_performance",
                                       "enrichment")}, **figs, title="screen")
    for png in figs.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.with_suffix(".svg").is_file()
    perf = pd.read_csv(out["alpha_performance"], sep="\t")
    assert list(perf["path_index"]) == list(range(5)) and perf["n_genes_chosen"].sum() == 30
    np.testing.assert_allclose(perf["lambda_ratio"], np.geomspace(1, 1e-3, 5))
    assert list(pd.read_csv(out["coefficients"], sep="\t", index_col=0).columns) == spec["genes"]


def test_qc_covariates_are_computed_when_obs_lacks_them():
    counts = np.array([[1, 3, 6], [0, 2, 2], [5, 0, 5]], dtype=float)
    obs = pd.DataFrame({"pct_counts_mt": [9.0, 9.0, 9.0]})
    out = qc_covariates(counts, ["MT-CO1", "ACTB", "GAPDH"], obs.drop(columns="pct_counts_mt"), ["pct_counts_mt", "total_counts", "log1p_total_counts"])
    np.testing.assert_allclose(out["pct_counts_mt"], [10.0, 0.0, 50.0])
    np.testing.assert_allclose(out["total_counts"], [10, 4, 10])
    np.testing.assert_allclose(out["log1p_total_counts"], np.log1p([10, 4, 10]))
    assert qc_covariates(counts, ["MT-CO1", "ACTB", "GAPDH"], obs, ["pct_counts_mt"]) is obs  # a user's own column wins
    with pytest.raises(S3RInputError, match="no gene is named MT-"):
        qc_covariates(counts, ["A", "B", "C"], obs.drop(columns="pct_counts_mt"), ["pct_counts_mt"])


def _sheet(tmp_path, rows, header="sample\th5ad\tperturbation_key\tcontrol\tcovariates"):
    path = tmp_path / "perturbseq.tsv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return {"samples": str(path), "demo": {}}


def test_sheet_rows_are_checked_before_any_job(screen, tmp_path):
    ok = read_perturbseq_sheet(_sheet(tmp_path, [f"s1\t{screen}\tperturbation\tcontrol\tbatch,total_counts"]))
    assert ok == {"s1": {"h5ad": str(screen), "perturbation_key": "perturbation", "control": "control",
                         "covariates": ["batch", "total_counts"], "layer": None, "genes": None, "s_genes": None, "g2m_genes": None,
                         "gmt": None}}
    for row, message in (
        (f"s1\t{screen}\tguide\tcontrol\t", "line 2 (screen 's1'), column 'perturbation_key': 'guide' is not an .obs column"),
        (f"s1\t{screen}\tperturbation\tNTC\t", "column 'control': no cell is labelled 'NTC'"),
        (f"s1\t{screen}\tperturbation\tcontrol\tbatch,phase", "column 'covariates': 'phase' is not an .obs column"),
        (f"s1\tmissing.h5ad\tperturbation\tcontrol\t", "column 'h5ad': file 'missing.h5ad' not found"),
        ("s 1\tx.h5ad\t\t\t", "column 'sample': give a name of letters"),
    ):
        with pytest.raises(S3RInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            read_perturbseq_sheet(_sheet(tmp_path, [row]))
    with pytest.raises(S3RInputError, match="unknown column 'guides'"):
        read_perturbseq_sheet(_sheet(tmp_path, [f"s1\t{screen}"], header="sample\th5ad\tguides"))
    # a demo input does not exist yet: the workflow will simulate it
    demo = {**_sheet(tmp_path, ["d\tresources/demo/perturbseq/d.h5ad\t\t\t"]), "demo": {"d": {}}}
    assert read_perturbseq_sheet(demo)["d"]["control"] == "control"


def test_dry_run_plans_the_perturbseq_rules(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    result = _snakemake(tmp_path, "-n", "--quiet", "rules")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    for rule in ("simulate_perturbseq_demo", "perturbseq_fit", "perturbseq_figures"):
        assert rule in text, text[-3000:]
    config = tmp_path / "config" / "config.yaml"
    config.write_text(config.read_text().replace("perturbseq:\n  enabled: true", "perturbseq:\n  enabled: false"))
    result = _snakemake(tmp_path, "-n", "--quiet", "rules")
    assert result.returncode == 0 and "perturbseq_fit" not in result.stdout + result.stderr


# the demo's screen run by the workflow (its rules for real): tests/test_workflow.py, on the demo's own run


def test_modules_group_perturbations_that_move_the_same_programme(tmp_path):
    """12 perturbations on 3 programmes: P1 & P7 raise programme 1, P4 & P10 lower it, and so on — six modules
    of two, each pair exactly the perturbations sharing a planted effect."""
    from sklearn.metrics import adjusted_rand_score

    path = tmp_path / "s12.h5ad"
    simulate_perturbseq_h5ad(path, n_cells=1300, n_genes=90, n_perturbations=12, n_programmes=3, seed=4, cell_cycle=0.0)
    spec = {"h5ad": str(path), "perturbation_key": "perturbation", "control": "control", "covariates": ["batch"], "layer": None,
            "genes": None, "s_genes": None, "g2m_genes": None, "gmt": None}
    out = {k: tmp_path / f"{k}.tsv" for k in ("coefficients", "programmes", "programme_scores", "modules")}
    run_screen(spec, {**SETTINGS, "cv": None, "alpha": 0.02}, outputs=out)
    text = out["modules"].read_text().splitlines()
    assert text[0] == "perturbation\tmodule" and len(text) == 13 and text[1].split("\t")[1].startswith("M")
    mods = pd.read_csv(out["modules"], sep="\t", index_col=0)["module"]
    truth = [j % 6 for j in range(12)]
    assert adjusted_rand_score(truth, mods.loc[[f"P{j + 1}" for j in range(12)]]) == 1.0


def test_cell_cycle_covariates_need_gene_lists(screen, tmp_path):
    spec = _spec(screen, s_genes=None, g2m_genes=None)
    with pytest.raises(S3RInputError, match=r"covariate 'S_score' is not an \.obs column; give S- and G2M-phase gene lists"):
        run_screen(spec, SETTINGS, outputs=_outputs(tmp_path))
    with pytest.raises(S3RInputError, match="column 's_genes'.*gene list file 'nope/s.txt' not found"):
        read_perturbseq_sheet(_sheet(tmp_path, [f"s1\t{screen}\tperturbation\tcontrol\tS_score\tnope/s.txt"],
                                     header="sample\th5ad\tperturbation_key\tcontrol\tcovariates\ts_genes"))


@pytest.mark.slow
def test_dot_test_perturbseq_scenario_runs(tmp_path):
    """.test/perturbseq (snakemake-workflows convention): the tiny Poisson screen through the workflow, tables
    in the one format (TSV, programmes P<n>) the CLI writes too."""
    shutil.copytree(REPO / ".test" / "perturbseq", tmp_path, dirs_exist_ok=True)
    targets = ["results/perturbseq/perturb/programme_scores.tsv", "results/report/perturbseq/perturb/programme_dotplot.png"]
    result = _snakemake(tmp_path, "--cores", "2", *targets, "results/perturbseq/perturb/perturbseq.json")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    out = tmp_path / "results" / "perturbseq" / "perturb"
    summary = json.loads((out / "perturbseq.json").read_text())
    assert summary["model"]["family"] == "poisson" and summary["n_perturbations"] == 4 and summary["n_genes"] == 60
    assert summary["covariates"] == ["batch=b1", "log1p_total_counts"] and summary["report"]["converged"]
    lines = (out / "programme_scores.tsv").read_text().splitlines()
    progs = sorted(set(summary["programme_sizes"]) - {"P0"}, key=lambda p: int(p[1:]))
    assert lines[0] == "\t".join(["perturbation"] + progs) and [line.split("\t")[0] for line in lines[1:]] == ["P1", "P2", "P3", "P4"]
    assert (out / "programmes.tsv").read_text().splitlines()[0] == "gene\tprogramme"
