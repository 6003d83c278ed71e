"""Device and dtype resolution shared by every solver."""

from __future__ import annotations

import torch

from s3r.errors import S3RInputError

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present so the same call runs on a laptop and a GPU node."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise S3RInputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise S3RInputError(f"device {device!r} requested but CUDA is not available here; use --device auto or cpu")
    return resolved


def resolve_dtype(dtype: str | torch.dtype = "float64") -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype)]
    except KeyError as err:
        raise S3RInputError(f"unknown dtype {dtype!r}; use float64 or float32") from err


class cpu_threads:
    """Run small CPU problems on one thread.

    Below a few hundred thousand entries per tensor, torch's intra-op threads cost more in hand-offs than they
    save, and on a loaded machine they are far worse (spinning on busy cores); large problems keep the
    configured thread count.
    """

    SMALL = 2_000_000

    def __init__(self, device: torch.device, n_entries: int):
        self.active = device.type == "cpu" and n_entries < self.SMALL
        self.saved = None

    def __enter__(self):
        if self.active:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            torch.set_num_threads(self.saved)
        return False


def choose_device(gpus_granted, log=None) -> str:
    """'cuda' only when the scheduler granted this job a GPU and CUDA is usable.

    A GPU present but not granted belongs to another job (local runs with ``--resources gpu=0`` scale the
    request to 0); a GPU granted but not usable (a CPU-only torch build, a fake GRES) falls back to the CPU
    with a warning rather than failing the job.
    """
    import sys

    log = log or sys.stderr
    granted = int(gpus_granted or 0) > 0
    available = torch.cuda.is_available()
    if granted and available:
        return "cuda"
    if granted:
        print("warning: a GPU was requested but CUDA is not available to torch here; running on the CPU", file=log)
    return "cpu"
