"""Environment variables every job's interpreter inherits from the workflow (set once, in ``rules/common.smk``).

glibc hands every freed block above its mmap threshold back to the kernel and faults it in again, page by page, at
the next allocation of that size. The jobs allocate and free solver state of 10⁵–10⁸ bytes every few steps (the
fused loop's scratch, a batch's per-problem copies, the fold states they write), so on the 200-target benchmark
(``benchmarks/workflow_scale.py run --targets 200``) 376 of its 4,392 CPU-s were the kernel zeroing pages: 108 million
minor faults. With the thresholds below such blocks stay in the process's heap and are reused; arrays larger than
256 MiB are still mapped on their own and returned when freed, and at most 512 MiB of free heap top is kept. The
round-0 fold job of 12 DLPFC targets: 4.9 × 10⁵ → 7 × 10⁴ faults, 1.1 → 0.15 s system time, the same peak memory
(benchmarks/README.md, session 26). A value the user exported wins (``setdefault``).
"""

from __future__ import annotations

import os

__all__ = ["JOB_ENVIRONMENT", "set_job_environment"]

JOB_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(256 << 20),  # bytes: larger blocks are mapped on their own, smaller come from the heap
    "MALLOC_TRIM_THRESHOLD_": str(512 << 20),  # bytes of free heap top kept for the next allocation
}


def set_job_environment(environ=os.environ) -> dict:
    """Put :data:`JOB_ENVIRONMENT` into ``environ`` where not set already; returns what the jobs will see."""
    for key, value in JOB_ENVIRONMENT.items():
        environ.setdefault(key, value)
    return {key: environ[key] for key in JOB_ENVIRONMENT}
