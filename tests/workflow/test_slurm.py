"""The demo (one small sample of it) on a real single-node SLURM cluster with profiles/slurm: GPU rules must run
on partition gpu and CPU rules on partition cpu, as sacct records them.

The cluster is started by ../shared/slurm/start-local-slurm.sh (munge, MariaDB + slurmdbd for sacct, a fake
GPU, and a submit policy that rejects GPU jobs outside partition gpu), and the daemons this test started are
stopped afterwards. Needs root and Debian packages; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers import REPO, SNAKEFILE, apt_lock, copy_config

SLURM_DIR = REPO.parent / "shared" / "slurm"
GPU_RULES = {"fit_final", "deconvolve", "tune_fold"}
RUN_TIMEOUT = 900  # seconds, for the whole demo through the scheduler


def _why_not() -> str | None:
    if not (SLURM_DIR / "start-local-slurm.sh").is_file():
        return f"no {SLURM_DIR}/start-local-slurm.sh (../shared beside the checkout)"
    if os.geteuid() != 0:
        return "starting the SLURM daemons needs root"
    if not shutil.which("dpkg-query") or not shutil.which("apt-get"):
        return "no Debian packaging (dpkg/apt-get) to install munge and slurm"
    if not shutil.which("timeout"):
        return "no coreutils timeout"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


def _cluster_running() -> bool:
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "UP" in ping.stdout


@pytest.fixture(scope="module")
def slurm_cluster():
    """Start the cluster unless one is up already; stop it afterwards only if this fixture started it."""
    started_here = not _cluster_running()
    if started_here:
        with apt_lock():  # the script apt-installs munge and slurm; other tests may be installing packages
            start = subprocess.run(
                ["timeout", "-k", "30", "900", "bash", str(SLURM_DIR / "start-local-slurm.sh")],
                capture_output=True, text=True,
            )
        if start.returncode != 0:
            subprocess.run(["bash", str(SLURM_DIR / "stop-local-slurm.sh")], capture_output=True)
            tail = (start.stdout + start.stderr)[-3000:]
            if "apt-get" in tail and ("Could not resolve" in tail or "Unable to locate" in tail or "Failed to fetch" in tail):
                pytest.skip(f"cannot install the SLURM packages here: {tail.strip().splitlines()[-1]}")
            pytest.fail(f"start-local-slurm.sh failed (rc {start.returncode}):\n{tail}")
    try:
        yield
    finally:
        if started_here:
            subprocess.run(["bash", str(SLURM_DIR / "stop-local-slurm.sh")], capture_output=True, timeout=300)


def _sacct_jobs(workdir: Path, since: str) -> list[dict[str, str]]:
    fields = ["JobIDRaw", "Partition", "State", "AllocTRES", "Comment", "WorkDir"]
    result = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-a", "-S", since, f"--format={','.join(fields)}"],
        capture_output=True, text=True, check=True,
    )
    jobs = [dict(zip(fields, line.split("|"))) for line in result.stdout.splitlines() if line.strip()]
    return [j for j in jobs if Path(j["WorkDir"]) == workdir]


def test_demo_on_slurm_routes_gpu_rules_to_gpu_partition(slurm_cluster, tmp_path):
    workdir = copy_config(tmp_path / "run")
    # the demo cut to one small sample (its chunk of two targets) and no perturb-seq screen, with a small tuning
    # budget: the serialised GPU jobs (one fake GPU) are 2 folds + 1 fit, and every rule kind still goes through sbatch
    config_path = workdir / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["demo"] = {"square": {**config["demo"]["square"], "n_spots": 150}}
    config["perturbseq"]["enabled"] = False
    config["tune"].update(n_trials=2, rounds=1, folds=2)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    sheet = pd.read_csv(workdir / "config" / "samples.tsv", sep="\t", dtype=str, keep_default_na=False)
    sheet[sheet["sample"] == "square"].to_csv(workdir / "config" / "samples.tsv", sep="\t", index=False)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    cmd = [
        "timeout", "-k", "30", str(RUN_TIMEOUT),
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
        "--profile", str(REPO / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks", "5",
        # the one node has 2 CPUs: cap the profile's threads (a GPU fit asks for 4) or the job never starts
        "--cores", str(os.cpu_count() or 1),
    ]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-6000:]
    assert (workdir / "results" / "report" / "summary.tsv").is_file()

    # sacct needs a moment to record the last jobs' final state
    for _ in range(30):
        jobs = _sacct_jobs(workdir, since)
        if jobs and all(j["State"] == "COMPLETED" for j in jobs):
            break
        time.sleep(1)
    assert jobs, f"sacct shows no jobs for {workdir}"
    rules = {}
    for job in jobs:
        assert job["State"] == "COMPLETED", job
        # the plugin labels each job "rule_<name>_wildcards_<...>"
        name = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
        rules.setdefault(name, []).append(job)
        if name in GPU_RULES:
            assert job["Partition"] == "gpu" and "gres/gpu=1" in job["AllocTRES"], job
        else:
            assert job["Partition"] == "cpu" and "gres/gpu" not in job["AllocTRES"], job
    # both targets of the sample share its chunk's jobs: one fit, one fold job per fold
    assert len(rules.get("fit_final", [])) == 1, rules.keys()
    assert len(rules.get("tune_fold", [])) == 2, rules.keys()
    assert {"simulate_demo", "preprocess", "graph", "fit_report"} <= set(rules), rules.keys()
