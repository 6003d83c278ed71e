"""Helpers shared by the test modules: the Snakemake runner, working directories with a copy of config/, a tuned
and fitted simulated sample, and a lock that serialises the tests which install Debian packages (several
pytest-xdist workers may reach apt at once).

Imported as ``from helpers import ...`` (tests/ is on sys.path through its conftest.py, pytest's prepend mode).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SHARED = REPO.parent / "shared"  # ../shared beside the checkout: real data, the example data, the SLURM scripts
APT_LOCK = Path(tempfile.gettempdir()) / "s3r-tests-apt.lock"


def snakemake(workdir: Path, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The workflow run in ``workdir`` (its own config/), output captured; never touches the checkout."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def copy_config(path: Path, source: Path = REPO / "config") -> Path:
    """``path`` (created) holding a copy of ``source`` as config/: a working directory for one run."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, path / "config", dirs_exist_ok=True)
    return path


@contextlib.contextmanager
def apt_lock():
    """Held while a test installs Debian packages: apt-get fails at once when another process holds dpkg's lock."""
    with open(APT_LOCK, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tuned_fit(root, layout: str, tune_config: dict, *, params: dict | None = None):
    """A simulated sample tuned by s3r.tune (states kept) into root/tune and fitted into root/fit.

    ``params``: fit at these λ, α, β instead of the tuned ones. Returns (simulation, model, best_params).
    """
    from s3r import S3R, tune
    from s3r.io import RegressionData
    from s3r.results import write_fit
    from s3r.simulate import simulate

    sim = simulate(layout, sigma=1.0, seed=0)
    data = RegressionData(sim.X, sim.y, sim.coords, sim.spot_ids, sim.feature_names, "target")
    best = tune.run_search(data, tune_config, root / "tune", keep_states=True)
    chosen = params or {key: best[key] for key in ("lambda_smooth", "alpha", "beta")}
    model = S3R("tv", **chosen).fit(sim.X, sim.y, sim.coords)
    write_fit(root / "fit", model, data)
    return sim, model, best
