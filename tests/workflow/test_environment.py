"""The jobs' environment (s3r.workflow.environment): set by common.smk for every job, and it does what it is for —
a job that allocates and frees large arrays again and again stops faulting their pages in each time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from s3r.workflow.environment import JOB_ENVIRONMENT, set_job_environment

REPO = Path(__file__).resolve().parents[2]

CHURN = """
import resource
import numpy as np
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(200):  # a solver's churn: blocks of a few MB, allocated and freed in a changing order
    a = np.ones(400_000 + (i % 7) * 100_000)
    b = np.ones(1_000_000)
    del a
    c = np.ones(300_000)
    del b, c
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env: dict) -> int:
    clean = {k: v for k, v in os.environ.items() if k not in JOB_ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", CHURN], env={**clean, **env}, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_common_smk_sets_it_for_every_job():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "from s3r.workflow.environment import set_job_environment" in common and "\nset_job_environment()" in common


def test_a_value_the_user_set_wins():
    env = {"MALLOC_MMAP_THRESHOLD_": "1024"}
    seen = set_job_environment(env)
    assert seen["MALLOC_MMAP_THRESHOLD_"] == "1024" and seen["MALLOC_TRIM_THRESHOLD_"] == JOB_ENVIRONMENT["MALLOC_TRIM_THRESHOLD_"]


def test_freed_arrays_are_reused_not_faulted_in_again():
    plain, tuned = _faults({}), _faults(JOB_ENVIRONMENT)
    # measured: ≈ 83,000 faults (the blocks faulted in again, page by page) against ≈ 2,400 (the heap reused)
    assert plain > 20_000 and tuned < plain / 5, (plain, tuned)
