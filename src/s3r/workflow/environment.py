"""Environment variables every job's interpreter inherits from the workflow (set once, in ``rules/common.smk``):
the allocator settings of :mod:`s3r.allocator` (why: there), read by glibc as each job starts. The round-0 fold job
of 12 DLPFC targets: 4.9 × 10⁵ → 7 × 10⁴ faults, 1.1 → 0.15 s system time, the same peak memory
(benchmarks/README.md, session 26). A value the user exported wins (``setdefault``).
"""

from __future__ import annotations

import os

from s3r.allocator import ALLOCATOR_ENVIRONMENT

__all__ = ["JOB_ENVIRONMENT", "set_job_environment"]

JOB_ENVIRONMENT = ALLOCATOR_ENVIRONMENT


def set_job_environment(environ=os.environ) -> dict:
    """Put :data:`JOB_ENVIRONMENT` into ``environ`` where not set already; returns what the jobs will see."""
    for key, value in JOB_ENVIRONMENT.items():
        environ.setdefault(key, value)
    return {key: environ[key] for key in JOB_ENVIRONMENT}
