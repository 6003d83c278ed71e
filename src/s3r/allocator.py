"""Freed large arrays stay in the process's heap instead of going back to the kernel (glibc's malloc settings).

glibc hands every freed block above its mmap threshold back to the kernel and faults it in again, page by page, at the
next allocation of that size; its threshold adapts only up to 32 MiB. The solvers allocate and free arrays of
10⁵–10⁸ bytes every few steps, so without these settings the kernel's zeroing of pages becomes the larger part of
the work: the 200-target workflow run spent 376 of 4,392 CPU-s in it (session 26), and ``s3r glm`` on the real
ECCITE screen (20,729 cells × 299 genes, negative binomial; its n × genes temporaries are 50 MB) 498 s of system
time against 343 s of its own (session 31). Blocks above 256 MiB are still mapped on their own and returned when
freed; at most 512 MiB of free heap top is kept. A value exported in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ALLOCATOR_ENVIRONMENT", "keep_freed_blocks"]

ALLOCATOR_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(256 << 20),  # bytes: larger blocks are mapped on their own, smaller come from the heap
    "MALLOC_TRIM_THRESHOLD_": str(512 << 20),  # bytes of free heap top kept for the next allocation
}
_MALLOPT_PARAM = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_MMAP_THRESHOLD_": -3}  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)


def keep_freed_blocks(environ=os.environ) -> dict:
    """Apply :data:`ALLOCATOR_ENVIRONMENT` to this running process through glibc's ``mallopt`` (the ``s3r`` command
    calls it at start; workflow jobs get the same values as environment variables, which glibc reads at start-up).
    A setting exported in ``environ`` is left to glibc, which has read it already. Returns the settings applied
    here; empty where the C library is not glibc (musl, macOS), which does not need them or has no ``mallopt``."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = {}
    for key, value in ALLOCATOR_ENVIRONMENT.items():
        if key not in environ and mallopt(_MALLOPT_PARAM[key], int(value)) == 1:
            applied[key] = value
    return applied
