"""The Snakemake report of a tiny run, opened in headless Chromium: it renders, with the expected sections and
images.

One simulated sample (150 spots, 12 features, one target), tuning with 2 trials in 1 round on 2 folds, and a
two-iteration deconvolution of cell-type scores planted on the sample's regions: every report rule runs, in
about a minute on two cores. Chromium is Debian's ``chromium`` package; the test installs it when it is
missing and it can (CI runs as root), and skips with the reason otherwise.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import apt_lock, copy_config
from helpers import snakemake as run_snakemake
SAMPLE, TARGET = "tiny", "target_a"
DEMO = {"layout": "three_regions", "geometry": "uniform", "n_spots": 150, "n_features": 12, "sigma": 0.5, "seed": 5,
        "targets": [TARGET]}

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def tiny_workdir(path: Path) -> Path:
    """A copy of config/ reduced to one small sample with deconvolution scores, and no perturb-seq screen."""
    from s3r.simulate import simulate

    copy_config(path)
    config = yaml.safe_load((path / "config" / "config.yaml").read_text())
    config["demo"] = {SAMPLE: DEMO}
    config["tune"].update(n_trials=2, rounds=1, folds=2, solver={"tol": 1e-2, "max_iter": 300, "dtype": "float32"})
    config["model"].update(max_iter=3000, tol=1e-4)
    config["deconvolve"] = {"enabled": True, "options": {"n_components": 3, "lambda_smooth": 0.5, "graph": "delaunay",
                                                          "max_iter": 2, "x_max_iter": 200}}
    config["perturbseq"]["enabled"] = False
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # cell-type scores planted on the simulator's regions (the same spots the demo rule will write)
    sim = simulate(DEMO["layout"], sigma=DEMO["sigma"], n_features=DEMO["n_features"], geometry="uniform",
                   n_spots=DEMO["n_spots"], seed=DEMO["seed"])
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.5, 1.0, size=(sim.n_spots, 4))
    scores[np.arange(sim.n_spots), sim.regions] += 3.0
    pd.DataFrame(scores, index=sim.spot_ids, columns=["neuron", "astro", "oligo", "micro"]).to_csv(path / "scores.csv")
    paths = {"x_csv": f"resources/demo/{SAMPLE}/X.csv", "y_csv": f"resources/demo/{SAMPLE}/Y.csv",
             "coords_csv": f"resources/demo/{SAMPLE}/coords.csv"}
    sheet = pd.DataFrame([{"sample": SAMPLE, **paths, "targets": TARGET, "features": "all", "scores": "scores.csv"}])
    sheet.to_csv(path / "config" / "samples.tsv", sep="\t", index=False)
    return path


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        with apt_lock():
            subprocess.run(install, capture_output=True, timeout=900, env=env)
            if not shutil.which("chromium"):  # a fresh machine has no package lists yet
                subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env)
                subprocess.run(install, capture_output=True, timeout=900, env=env)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip("headless Chromium is not installed and cannot be installed here (apt-get install chromium, as root)")


def chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    workdir = tiny_workdir(tmp_path_factory.mktemp("report_html"))
    start = time.monotonic()
    result = snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    elapsed = time.monotonic() - start
    print(f"tiny workflow: {elapsed:.1f} s")
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    result = snakemake(workdir, "--report", "report.html")
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return workdir, workdir / "report.html"


def embedded_images(html: str) -> list[bytes]:
    """Every PNG the report embeds (Snakemake 9: data:image/png;charset=utf8;filename=NAME;base64,...)."""
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;[^,\"]*base64,([A-Za-z0-9+/=]+)", html)]


def report_categories(html: str) -> dict:
    """The report's navigation: {category: {subcategory: [files]}} as Snakemake embeds it."""
    import json

    match = re.search(r"categories = (\{.*?\});\s*</script>", html, flags=re.S)
    assert match, "no categories in the report"
    return json.loads(match.group(1))


def test_report_is_self_contained_with_every_figure(report):
    import matplotlib.image as mpimg

    workdir, path = report
    html = path.read_text(errors="replace")
    images = embedded_images(html)
    # per target: maps, heatmap, convergence, observed vs fitted, 3 tuning figures; per sample: domains,
    # programmes, 3 deconvolution maps
    assert len(images) == 12, len(images)
    for data in images:
        pixels = mpimg.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 50 and pixels.shape[1] > 50 and pixels[..., :3].std() > 0.01
    categories = report_categories(html)
    assert set(categories) == {SAMPLE, "Summary", "Tuning"}
    assert set(categories[SAMPLE]) == {TARGET, "sample-wide", "deconvolution"}
    files = {Path(f).name for sub in categories[SAMPLE].values() for f in sub}
    assert {"coefficient_maps.png", "heatmap.png", "features.tsv", "convergence.png", "observed_vs_predicted.png",
            "tuning_history.png", "tuning_parameters.png", "tuning_folds.png", "domains.png", "programmes.png",
            "programmes.tsv", "programme_scores.tsv", "proportions.png", "regions.png", "edge_weights.png"} <= files
    assert categories["Summary"] == {"Other": ["results/report/summary.tsv"]}
    assert not re.search(r"""<(?:img|script|link)[^>]+(?:src|href)=["']https?://""", html), "the report loads remote files"
    summary = pd.read_csv(workdir / "results" / "report" / "summary.tsv", sep="\t")
    assert summary[["sample", "target", "params_source", "n_trials"]].values.tolist() == [[SAMPLE, TARGET, "tune", 2]]
    assert summary.loc[0, "cv_loss"] > 0


def test_report_renders_in_headless_chromium(report, tmp_path):
    import matplotlib.image as mpimg

    _, path = report
    binary = find_chromium()
    result = chromium(binary, "--dump-dom", path.as_uri())
    dom = result.stdout
    assert result.returncode == 0 and len(dom) > 1000, result.stderr[-3000:]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    text = " ".join(re.sub(r"<[^>]+>", " ", body).split())
    # rendered by the page's JavaScript: the navigation (general sections, then the result categories) and
    # the workflow description from workflow/report/workflow.rst
    assert re.search(r"Workflow Statistics About Results Summary tiny Tuning", text), text[:3000]
    assert "s3r fitted spatially smooth sparse regressions" in text, text[:3000]
    assert len(re.findall(r"<img\b", body)) >= 1 or "<svg" in body
    shot = tmp_path / "report.png"
    result = chromium(binary, f"--screenshot={shot}", "--window-size=1400,1000", path.as_uri())
    assert shot.is_file(), result.stderr[-3000:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (1000, 1400) and pixels[..., :3].std() > 0.02, "the page rendered blank"
