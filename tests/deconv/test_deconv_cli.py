"""`s3r deconvolve` end to end, and scores computed from counts with a reference."""

import json

import numpy as np
import pandas as pd
import pytest

from s3r.cli import main
from s3r.deconv import poisson_scores, simulate_deconvolution
from s3r.errors import S3RInputError


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deconv_inputs")
    sim = simulate_deconvolution("dlpfc_151673", n_spots=300, n_cell_types=6, seed=2)
    scores = pd.DataFrame(sim.scores, index=sim.spot_ids, columns=sim.cell_types)
    scores.to_csv(folder / "S.csv")
    coords = pd.DataFrame(sim.coords, index=sim.spot_ids, columns=["row", "col"])
    coords.iloc[::-1].to_csv(folder / "C.csv")  # a different spot order than the scores
    return folder, sim


def test_deconvolve_writes_every_output(inputs, tmp_path, capsys):
    folder, sim = inputs
    out = tmp_path / "out"
    code = main(
        ["deconvolve", "--scores", str(folder / "S.csv"), "--coords", str(folder / "C.csv"), "--components", "3",
         "--lambda", "5", "--max-iter", "6", "--out", str(out)]
    )
    assert code == 0
    mixture = pd.read_csv(out / "mixture.csv", index_col=0)
    dictionary = pd.read_csv(out / "dictionary.csv", index_col=0)
    proportions = pd.read_csv(out / "proportions.csv", index_col=0)
    edges = pd.read_csv(out / "edge_weights.csv")
    record = json.loads((out / "deconvolve.json").read_text())
    assert list(mixture.index) == sim.spot_ids and list(mixture.columns) == ["component_1", "component_2", "component_3"]
    assert list(dictionary.index) == sim.cell_types and list(proportions.columns) == sim.cell_types
    np.testing.assert_allclose(proportions.to_numpy(), mixture.to_numpy() @ dictionary.to_numpy().T, atol=1e-9)
    assert list(edges.columns) == ["spot_a", "spot_b", "weight"] and set(edges.spot_a) <= set(sim.spot_ids)
    sums = pd.concat([edges.groupby("spot_a").weight.sum(), edges.groupby("spot_b").weight.sum()], axis=1).fillna(0).sum(axis=1)
    assert sums.min() >= 1.0 - 1e-8 and np.median(sums.to_numpy()) == pytest.approx(1.0)  # "at_least": tight at most spots
    for key in ("objective_trace", "iterations", "seconds", "converged", "feasibility", "parameters", "versions"):
        assert key in record
    assert record["iterations"] == 6 and record["parameters"]["lambda"] == 5.0
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries
    assert "wrote" in capsys.readouterr().err


def test_infeasible_weights_are_one_line_and_a_nonzero_exit(inputs, tmp_path, capsys):
    folder, _ = inputs
    code = main(
        ["deconvolve", "--scores", str(folder / "S.csv"), "--coords", str(folder / "C.csv"), "--components", "2",
         "--graph", "mst", "--weight-constraint", "equal", "--out", str(tmp_path / "o"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert err.startswith("s3r deconvolve: error: edge-weight LP infeasible") and "--fixed-weights" in err
    assert not (tmp_path / "o" / "mixture.csv").exists()


def test_missing_spots_in_coordinates_are_named(inputs, tmp_path, capsys):
    folder, sim = inputs
    pd.read_csv(folder / "C.csv", index_col=0).iloc[5:].to_csv(tmp_path / "C.csv")
    code = main(
        ["deconvolve", "--scores", str(folder / "S.csv"), "--coords", str(tmp_path / "C.csv"), "--components", "2",
         "--out", str(tmp_path / "o"), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code != 0 and "lacks 5 spot(s)" in err and sim.spot_ids[-5] in err


def reference_and_counts(seed=0, n_spots=300, n_genes=80):
    rng = np.random.default_rng(seed)
    types = ["T", "B", "Myeloid", "Stroma"]
    genes = [f"g{j}" for j in range(n_genes)]
    profiles = rng.gamma(0.5, size=(len(types), n_genes))
    truth = rng.integers(0, len(types), size=n_spots)
    counts = rng.poisson(400 * profiles[truth] / profiles[truth].sum(axis=1, keepdims=True))
    reference = pd.DataFrame(profiles, index=types, columns=genes)
    return reference, pd.DataFrame(counts, index=[f"s{i}" for i in range(n_spots)], columns=genes), truth


def test_poisson_scores_pick_the_generating_type():
    reference, counts, truth = reference_and_counts()
    shuffled = counts[counts.columns[::-1]]  # genes are matched by name, not position
    scores = poisson_scores(shuffled, reference)
    assert list(scores.columns) == list(reference.index) and scores.to_numpy().max(axis=1) == pytest.approx(1.0)
    assert np.mean(scores.to_numpy().argmax(axis=1) == truth) > 0.95
    flatter = poisson_scores(counts, reference, temperature=50.0)
    assert flatter.to_numpy().min() > scores.to_numpy().min()
    with pytest.raises(S3RInputError, match="share no gene names"):
        poisson_scores(counts.rename(columns=lambda g: g.upper()), reference)


def test_deconvolve_from_counts_and_reference(tmp_path):
    reference, counts, _ = reference_and_counts(n_spots=200)
    rng = np.random.default_rng(1)
    coords = pd.DataFrame(rng.uniform(size=(200, 2)) * 1000, index=counts.index, columns=["x", "y"])
    counts.to_csv(tmp_path / "counts.csv")
    reference.T.to_csv(tmp_path / "reference.csv")  # genes × cell types is accepted too
    coords.to_csv(tmp_path / "C.csv")
    out = tmp_path / "out"
    code = main(
        ["deconvolve", "--counts", str(tmp_path / "counts.csv"), "--reference", str(tmp_path / "reference.csv"),
         "--coords", str(tmp_path / "C.csv"), "--components", "2", "--max-iter", "3", "--out", str(out), "--quiet"]
    )
    assert code == 0
    assert list(pd.read_csv(out / "proportions.csv", index_col=0).columns) == list(reference.index)
    assert pd.read_csv(out / "scores.csv", index_col=0).shape == (200, 4)
    assert json.loads((out / "deconvolve.json").read_text())["inputs"]["reference"].endswith("reference.csv")


def test_proportions_mode_is_the_default_with_a_reference_and_writes_its_evidence(tmp_path, capsys):
    import anndata

    from s3r.deconv import simulate_counts
    from s3r.report.deconvolution import deconvolution_report

    sim = simulate_counts(n_spots=200, n_types=3, n_genes=40, seed=6)
    pd.DataFrame(sim.counts, index=sim.spot_ids, columns=sim.genes).to_csv(tmp_path / "counts.csv")
    pd.DataFrame(sim.coords, index=sim.spot_ids, columns=["x", "y"]).to_csv(tmp_path / "C.csv")
    rng = np.random.default_rng(0)  # single cells around each type's mean: the reference as an .h5ad
    cells = np.concatenate([rng.poisson(np.tile(sim.reference[k] * 4, (25, 1))) for k in range(3)]).astype(float)
    anndata.AnnData(X=cells, obs=pd.DataFrame({"celltype": np.repeat(sim.cell_types, 25)}, index=[f"c{i}" for i in range(75)]),
                    var=pd.DataFrame(index=sim.genes)).write_h5ad(tmp_path / "cells.h5ad")
    out = tmp_path / "out"
    args = ["deconvolve", "--counts", str(tmp_path / "counts.csv"), "--reference", str(tmp_path / "cells.h5ad"),
            "--coords", str(tmp_path / "C.csv"), "--lambdas", "0,0.2", "--out", str(out), "--quiet"]
    missing = [a if a != str(tmp_path / "cells.h5ad") else str(tmp_path / "nope.h5ad") for a in args]
    assert main(missing) == 2  # a missing reference: one line naming it, not h5py's message
    assert capsys.readouterr().err.strip() == (f"s3r deconvolve: error: {tmp_path / 'nope.h5ad'}: reference .h5ad not found; "
                                               "check the path (--reference, the sheet's 'reference' column)")
    assert main(args) == 2  # input errors exit 2; the default .obs column is "cell_type"
    assert "no .obs['cell_type'] with cell types (columns: celltype); pass --cell-type-key" in capsys.readouterr().err
    assert main(args + ["--cell-type-key", "celltype"]) == 0
    proportions = pd.read_csv(out / "proportions.csv", index_col=0)
    assert list(proportions.index) == sim.spot_ids and list(proportions.columns) == sim.cell_types
    assert np.sqrt(np.mean((proportions.to_numpy() - sim.proportions) ** 2)) < 0.1
    choice = pd.read_csv(out / "lambda_choice.csv")
    cv = pd.read_csv(out / "lambda_cv.csv")
    assert list(choice.columns) == ["lambda", "mean", "se", "chosen"] and choice["lambda"].iloc[0] == 0.0
    np.testing.assert_allclose(choice["mean"], cv.groupby("lambda")["heldout_loglik_per_count"].mean().to_numpy())
    record = json.loads((out / "deconvolve.json").read_text())
    assert record["mode"] == "proportions" and record["lambda"] == choice.loc[choice["chosen"], "lambda"].item()
    assert record["certificate"]["converged"] and [row["lambda"] for row in record["lambda_evidence"]] == list(choice["lambda"])
    assert list(pd.read_csv(out / "platform_effects.csv", index_col=0).index) == sim.genes
    assert not list(out.glob(".*tmp*"))
    coords = pd.DataFrame(sim.coords, index=sim.spot_ids)
    paths = deconvolution_report(out, tmp_path / "report", coords=coords)
    assert paths["lambda_choice_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_proportions_mode_input_errors_are_one_line(inputs, tmp_path, capsys):
    folder, _ = inputs
    code = main(["deconvolve", "--scores", str(folder / "S.csv"), "--coords", str(folder / "C.csv"), "--mode", "proportions",
                 "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "--mode proportions fits counts: pass --counts and --reference" in err
    code = main(["deconvolve", "--scores", str(folder / "S.csv"), "--coords", str(folder / "C.csv"), "--mode", "components",
                 "--out", str(tmp_path / "o"), "--quiet"])
    assert code != 0 and "needs the number of mixture components: pass --components D" in capsys.readouterr().err
