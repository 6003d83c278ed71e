"""Checks of sheet × config × profile combinations that neither schema can see, run once at start-up.

Each of these used to pass the dry-run and then fail inside a job (or never start one), on a cluster hours
later; here each becomes one line naming the setting and the fix, raised before any job is scheduled
(``workflow/rules/common.smk``).
"""

from __future__ import annotations

from s3r.errors import S3RInputError
from s3r.workflow.samples import SampleSpec
from s3r.workflow.settings import graph_settings

__all__ = ["GPU_RULES", "check_graphs", "check_deconvolve_inputs", "check_threads", "job_threads"]

# Rules that ask for a GPU; on a cluster they land on GPU nodes, which often give few CPUs per GPU.
GPU_RULES = ("tune_fold", "fit_final", "deconvolve", "deconvolve_proportions")


def check_graphs(config: dict, specs: dict[str, SampleSpec]) -> None:
    """A radius graph needs a radius (the sheet's ``graph`` column can ask for one the config does not give)."""
    for spec in specs.values():
        settings = graph_settings(config, spec)
        if settings["method"] == "radius" and settings["radius"] is None:
            where = "sample sheet column 'graph'" if spec.overrides.get("graph") == "radius" else "config graph.method"
            raise S3RInputError(
                f"sample {spec.name}: {where} is 'radius' but config graph.radius is empty; "
                f"set graph.radius (coordinate units) or use method knn"
            )


def check_deconvolve_inputs(config: dict, specs: dict[str, SampleSpec], sheet: str) -> None:
    """Deconvolution switched on with nothing to deconvolve would silently do nothing."""
    if not config["deconvolve"]["enabled"]:
        for spec in specs.values():
            if spec.deconvolved_features:
                raise S3RInputError(
                    f"sample {spec.name}: features 'obsm:proportions' come from this run's deconvolution of the sample "
                    f"(no such .obsm key in its input); set deconvolve.enabled: true"
                )
        return
    if not any(spec.scores or spec.reference for spec in specs.values()):
        raise S3RInputError(
            f"config deconvolve.enabled is true but no sample in {sheet} has a 'scores' or 'reference' column; "
            f"add one to the samples to deconvolve, or set deconvolve.enabled: false"
        )


def job_threads(config: dict, wanted: int) -> int:
    """A rule's threads, capped to config ``jobs.max_threads`` (the CPUs one job can get on the nodes)."""
    cap = (config.get("jobs") or {}).get("max_threads")
    return int(wanted) if cap is None else max(1, min(int(wanted), int(cap)))


def check_threads(config: dict, overrides: dict[str, int]) -> None:
    """A profile's ``set-threads`` above what a node gives makes SLURM hold the job forever (PartitionConfig)."""
    cap = (config.get("jobs") or {}).get("max_threads")
    if cap is None:
        return
    for rule, threads in sorted(overrides.items()):
        if int(threads) > int(cap):
            raise S3RInputError(
                f"profile set-threads {rule}: {threads} exceeds config jobs.max_threads {cap} (the CPUs one job "
                f"can get); lower set-threads {rule} or raise jobs.max_threads"
            )
