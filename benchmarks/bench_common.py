"""What every benchmark records beside its figures: where, when and on which code it ran.

The library changes between runs and timings depend on the machine's load, so each result file carries this.
Scripts here run as ``python benchmarks/NAME.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def provenance() -> dict:
    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty_library": bool(_git("status", "--porcelain", "--", "../src")),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }
