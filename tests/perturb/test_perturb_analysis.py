"""Seed-002 downstream analysis against established peers: scanpy's score_genes / score_genes_cell_cycle,
scipy's Welch t-test and Fisher's exact test, statsmodels' BH; GMT parsing errors; and on the real screen
(skipped when ../shared/data/real is absent) the known IFN-γ pathway biology."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from s3r.errors import S3RInputError
from s3r.perturb import log_normalise, simulate_perturbseq
from s3r.perturb_analysis import (cell_cycle_scores, enrichment, programme_cell_scores, programme_tests, read_gmt, score_genes)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "papalexi_eccite.h5ad"


@pytest.fixture(scope="module")
def cycle_data():
    counts, obs, _, prog = simulate_perturbseq(n_cells=700, n_genes=120, n_perturbations=6, n_programmes=3, seed=2, cell_cycle=1.0)
    genes = [f"gene_{j + 1}" for j in range(120)]
    return sp.csr_matrix(counts), obs, genes, prog


def test_score_genes_equals_scanpy(cycle_data):
    sc = pytest.importorskip("scanpy")
    anndata = pytest.importorskip("anndata")
    counts, obs, genes, _ = cycle_data
    L = log_normalise(counts)
    ad = anndata.AnnData(X=L, var=pd.DataFrame(index=genes))
    for gene_list, seed, size in ((genes[:20], 0, 50), (genes[40:47] + ["not_a_gene"], 3, 10)):
        sc.tl.score_genes(ad, gene_list, ctrl_size=size, random_state=seed, score_name="s")
        ours = score_genes(L, genes, gene_list, ctrl_size=size, random_state=seed)
        np.testing.assert_allclose(ours, ad.obs["s"].to_numpy(), atol=1e-12)
    sc.tl.score_genes(ad, genes[:20], ctrl_size=50, random_state=0, score_name="p", gene_pool=genes[:40] + genes[80:])
    np.testing.assert_allclose(score_genes(L, genes, genes[:20], random_state=0, gene_pool=genes[:40] + genes[80:]), ad.obs["p"], atol=1e-12)


def test_cell_cycle_scores_equal_scanpy_and_track_the_truth(cycle_data):
    sc = pytest.importorskip("scanpy")
    anndata = pytest.importorskip("anndata")
    counts, obs, genes, _ = cycle_data
    L = log_normalise(counts)
    s_genes, g2m_genes = genes[60:70], genes[70:80]
    ours = cell_cycle_scores(L, genes, s_genes, g2m_genes)
    ad = anndata.AnnData(X=L, var=pd.DataFrame(index=genes))
    sc.tl.score_genes_cell_cycle(ad, s_genes=s_genes, g2m_genes=g2m_genes)
    np.testing.assert_allclose(ours[["S_score", "G2M_score"]].to_numpy(), ad.obs[["S_score", "G2M_score"]].to_numpy(), atol=1e-12)
    assert list(ours["phase"]) == list(ad.obs["phase"])
    assert np.corrcoef(ours["S_score"], obs["true_S"])[0, 1] > 0.6 and np.corrcoef(ours["G2M_score"], obs["true_G2M"])[0, 1] > 0.6
    with pytest.raises(S3RInputError, match="none of the S-phase genes"):
        cell_cycle_scores(L, genes, ["MCM2", "PCNA"], g2m_genes)


def test_programme_tests_match_scipy_and_statsmodels():
    from scipy.stats import ttest_ind
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    labels = np.array(["control"] * 60 + ["A"] * 40 + ["B"] * 30 + ["unassigned"] * 10, dtype=object)
    labels[-10:] = None  # dropped cells carry no label
    scores = pd.DataFrame({"P1": rng.normal(0, 1, 140), "P2": rng.normal(0, 1, 140)})
    scores.loc[60:99, "P1"] += 1.5  # A raises P1
    t = programme_tests(scores, labels)
    assert list(t["perturbation"]) == ["A", "A", "B", "B"] and list(t["programme"]) == ["P1", "P2", "P1", "P2"]
    ctrl = scores.iloc[:60]
    for _, row in t.iterrows():
        cells = scores[labels == row["perturbation"]][row["programme"]]
        ref = ttest_ind(cells, ctrl[row["programme"]], equal_var=False)
        assert row["mean_difference"] == pytest.approx(cells.mean() - ctrl[row["programme"]].mean(), abs=1e-12)
        assert row["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    np.testing.assert_allclose(t["p_adj"], multipletests(t["p_value"], method="fdr_bh")[1])
    assert t.loc[0, "p_adj"] < 1e-8 and (t["p_adj"].iloc[1:] > 1e-3).all()


def test_enrichment_equals_fisher_exact_and_bh_per_programme():
    from scipy.stats import fisher_exact
    from statsmodels.stats.multitest import multipletests

    genes = [f"g{i}" for i in range(60)]
    labels = pd.Series([1] * 10 + [2] * 10 + [0] * 40, index=genes)
    sets = {"HIT": genes[:8] + ["outside_1"], "HALF": genes[5:15], "MISS": genes[40:50], "TINY": ["g1", "outside_2"]}
    table = enrichment(labels, sets)
    assert "TINY" not in set(table["gene_set"])  # one universe gene < min_size
    for _, row in table.iterrows():
        a = row["overlap"]
        b = row["programme_size"] - a
        c = row["set_size"] - a
        d = 60 - a - b - c
        assert row["p_value"] == pytest.approx(fisher_exact([[a, b], [c, d]], alternative="greater")[1], rel=1e-9)
    p1 = table[table["programme"] == "P1"]
    assert p1.iloc[0]["gene_set"] == "HIT" and p1.iloc[0]["overlap"] == 8 and p1.iloc[0]["genes"] == ",".join(sorted(genes[:8]))
    np.testing.assert_allclose(p1["p_adj"], multipletests(p1["p_value"], method="fdr_bh")[1])


def test_gmt_errors_name_file_and_line(tmp_path):
    good = tmp_path / "sets.gmt"
    good.write_text("A\tdesc\tg1\tg2\tg2\n# comment\n\nB\t\tg3\n")
    assert read_gmt(good) == {"A": ["g1", "g2"], "B": ["g3"]}
    bad = tmp_path / "bad.gmt"
    bad.write_text("A\tdesc\tg1\nB desc g2 g3\n")
    with pytest.raises(S3RInputError, match=r"bad.gmt line 2: a GMT line needs name<TAB>description<TAB>genes"):
        read_gmt(bad)
    bad.write_text("A\td\tg1\nA\td\tg2\n")
    with pytest.raises(S3RInputError, match=r"line 2: gene set 'A' appears twice"):
        read_gmt(bad)
    with pytest.raises(S3RInputError, match="GMT file not found"):
        read_gmt(tmp_path / "missing.gmt")


def test_unmoved_pool_removes_crosstalk_between_programmes():
    """A perturbation that raises programme 1 must not lower programme 2's score through its control genes."""
    rng = np.random.default_rng(4)
    n, g = 800, 150
    base = np.repeat(np.linspace(0.5, 3, 10), 15)  # 10 expression levels × 15 genes
    prog = np.zeros(g, dtype=int)
    for j in range(5):  # five genes per level in programme 1, two in programme 2
        prog[j::15] = 1
    prog[5::15] = 2
    prog[6::15] = 2
    up = np.r_[np.zeros(400, bool), np.ones(400, bool)]
    mu = np.exp(base)[None].repeat(n, 0)
    mu[np.ix_(up, prog == 1)] *= 3.0
    L = log_normalise(sp.csr_matrix(rng.poisson(mu).astype(float)))
    names = [f"g{j}" for j in range(g)]
    labels = pd.Series(prog, index=names)
    shift = {}
    for pool in ("all", "unmoved"):
        s = programme_cell_scores(L, names, labels, ctrl_size=8, pool=pool)
        shift[pool] = s[up].mean() - s[~up].mean()
    assert shift["unmoved"]["P1"] > 0.8
    assert abs(shift["unmoved"]["P2"]) < 0.05 and shift["all"]["P2"] < -0.2


@pytest.mark.skipif(not REAL.is_file(), reason="real data (../shared/data/real) not present")
def test_real_screen_ifng_pathway_knockouts_lower_the_interferon_programme(tmp_path):
    """Papalexi et al. 2021: IFNGR1, IFNGR2, JAK2 and STAT1 knock-outs lower interferon-response genes; they
    must form one perturbation module and significantly lower the programme holding those genes."""
    from s3r.workflow.jobs import run_screen

    spec = {"h5ad": str(REAL), "perturbation_key": "perturbation", "control": "control", "covariates": ["bio_rep", "log1p_total_counts"],
            "layer": None, "genes": None, "s_genes": None, "g2m_genes": None, "gmt": None}
    settings = {"family": "gaussian", "alpha": None, "n_alphas": 8, "cv": 3, "n_top_genes": 299, "seed": 0}
    out = {k: tmp_path / f"{k}.tsv" for k in ("coefficients", "covariate_coefficients", "programmes", "modules", "programme_scores",
                                             "programme_tests", "alpha_performance", "cell_scores")}
    run_screen(spec, settings, outputs=out)
    W = pd.read_csv(out["coefficients"], sep="\t", index_col=0)
    mods = pd.read_csv(out["modules"], sep="\t", index_col=0)["module"]
    progs = pd.read_csv(out["programmes"], sep="\t", index_col=0)["programme"]
    tests = pd.read_csv(out["programme_tests"], sep="\t")
    pathway = ["IFNGR1", "IFNGR2", "JAK2", "STAT1"]
    assert W.shape == (25, 299)  # 26 targets, 25 with cells in this copy
    assert len(set(mods[pathway])) == 1 and mods[pathway].iloc[0] != "M0"  # one module, labelled as the figures say
    assert all(str(m).startswith("M") for m in mods)
    for p in pathway:
        assert W.loc[p, "PSMB9"] < -0.5 and W.loc[p, "UBE2L6"] < -0.5  # interferon-stimulated genes fall
    ifn = progs["PSMB9"]
    assert ifn != "P0" and progs["UBE2L6"] == ifn
    shift = tests[tests["programme"] == ifn].set_index("perturbation")
    assert (shift.loc[pathway, "mean_difference"] < -0.3).all() and (shift.loc[pathway, "p_adj"] < 1e-20).all()
    assert set(shift.nsmallest(4, "mean_difference").index) == set(pathway)
    M = pd.read_csv(out["covariate_coefficients"], sep="\t", index_col=0)
    assert list(M.index) == ["(intercept)", "bio_rep=rep_2", "bio_rep=rep_3", "log1p_total_counts"]
    perf = pd.read_csv(out["alpha_performance"], sep="\t")
    assert perf["heldout_deviance_explained_median"].iloc[0] < perf["heldout_deviance_explained_median"].max()
