"""Exact solvers for the S3R objective (datafit × penalty × solver, batched over problems)."""

from s3r.solver.batch import SMOOTH_MODES, build_operator, solve_batch
from s3r.solver.device import resolve_device, resolve_dtype
from s3r.solver.result import SolveResult

__all__ = ["SMOOTH_MODES", "SolveResult", "build_operator", "resolve_device", "resolve_dtype", "solve_batch"]
