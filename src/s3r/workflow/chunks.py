"""Targets in chunks: which targets of a sample one tuning-fold or final-fit job solves together.

A study asks about hundreds of targets per section; one job per (target, fold, round) would be thousands of
jobs, each paying interpreter and torch start-up and a queue wait. Targets of one sample share the design and
the graph, so a chunk of them is one batched program (``cv.solve_fold_targets``). The chunk size is bounded by
memory: the batched solver holds about :data:`BYTES_PER_ENTRY` bytes per (spot, feature, problem) entry
(iterates, gradients and the edge duals of a kNN graph, float32), and one fold job solves one round's trials
for every target of its chunk.

The plan must come out the same in every parse of the workflow (the main process and each job), so sizes are
read from the sheet and the input's header only: never from files a rule writes.
"""

from __future__ import annotations

from pathlib import Path

from s3r.workflow.samples import SampleSpec

__all__ = ["BYTES_PER_ENTRY", "MEMORY_BUDGET", "FALLBACK_TARGETS", "problem_size", "targets_per_job", "plan_chunks", "fit_dir", "tune_dir",
           "job_resources", "chunk_resources"]

BYTES_PER_ENTRY = 64  # ~16 float32 arrays of n × p per problem (W, its extrapolation, gradients, 7-NN edge duals)
MEMORY_BUDGET = 4 * 2**30  # per job: fits the default mem_mb on a CPU node and a small slice of a GPU
FALLBACK_TARGETS = 20  # when the problem size cannot be read before the inputs exist


def problem_size(spec: SampleSpec, config: dict) -> tuple[int, int] | None:
    """(spots, features) of a sample from its sheet row and its input's header, or None when unknown."""
    demo = _demo_size(spec, config)
    if demo is not None:
        return demo
    try:
        source = getattr(spec, "source", None)
        if source:  # an instrument folder, imported by a rule: its matrix's barcodes bound the spots from above
            return _folder_size(spec, config, source["matrix"])
        if spec.kind == "h5ad" and Path(spec.inputs.get("h5ad", "")).is_file():
            return _h5ad_size(spec, config)
        if spec.kind == "csv" and Path(spec.inputs["x_csv"]).is_file():
            with open(spec.inputs["x_csv"], encoding="utf-8-sig") as fh:
                n_spots = len(fh.readline().split(",")) - 1
                n_features = sum(1 for line in fh if line.strip())
            return n_spots, _n_features(spec, config, n_features)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return None


def _demo_size(spec: SampleSpec, config: dict) -> tuple[int, int] | None:
    from s3r.workflow.paths import demo_outputs

    generated = {str(Path(p)): v for p, v in demo_outputs(config.get("demo") or {}).items()}
    for path in spec.inputs.values():
        hit = generated.get(str(Path(path)))
        if hit is not None:
            demo = hit[1]
            return int(demo.get("n_spots", 400)), _n_features(spec, config, int(demo.get("n_features", 20)))
    return None


def _h5ad_size(spec: SampleSpec, config: dict) -> tuple[int, int]:
    import h5py

    with h5py.File(spec.inputs["h5ad"], "r") as f:
        obs, var = f["obs"], f["var"]
        n_spots = len(obs[obs.attrs["_index"]])
        n_vars = len(var[var.attrs["_index"]])
        if isinstance(spec.features, str) and spec.features.startswith("obsm:"):
            block = f["obsm"][spec.features[5:]]
            return n_spots, int(block.shape[1]) if hasattr(block, "shape") else len(block.keys()) - 1
    return n_spots, _n_features(spec, config, n_vars - len(spec.targets))


def _folder_size(spec: SampleSpec, config: dict, matrix: str) -> tuple[int, int] | None:
    import h5py

    if not str(matrix).endswith(".h5") or not Path(matrix).is_file():
        return None
    with h5py.File(matrix, "r") as f:
        n_genes, n_barcodes = (int(v) for v in f["matrix"]["shape"][:2])
    return n_barcodes, _n_features(spec, config, n_genes - len(spec.targets))


def _n_features(spec: SampleSpec, config: dict, available: int) -> int:
    if isinstance(spec.features, list):
        return len(spec.features)
    if spec.features == "all":
        return max(1, min(int(available), int(config["preprocess"]["max_features"])))
    return max(1, int(available))


def targets_per_job(config: dict, spec: SampleSpec) -> int:
    """Config ``jobs.targets_per_job``, or the most targets whose batched fold solve fits :data:`MEMORY_BUDGET`."""
    fixed = (config.get("jobs") or {}).get("targets_per_job")
    if fixed is not None:
        return int(fixed)
    size = problem_size(spec, config)
    if size is None:
        return FALLBACK_TARGETS
    n_spots, n_features = size
    trials = _trials_per_round(config)
    per_target = max(1, _tuned_spots(config, n_spots)) * max(1, n_features) * trials * BYTES_PER_ENTRY
    return max(1, MEMORY_BUDGET // per_target)


def _tuned_spots(config: dict, n_spots: int) -> int:
    """Spots a fold job solves: a section larger than tune.max_spots is searched on a window of that many."""
    tune = config.get("tune") or {}
    if not tune.get("enabled"):
        return n_spots
    from s3r.tune import DEFAULT_CONFIG

    limit = tune.get("max_spots", DEFAULT_CONFIG["max_spots"])
    return n_spots if limit is None else min(n_spots, int(limit))


def _trials_per_round(config: dict) -> int:
    tune = config.get("tune") or {}
    if not tune.get("enabled"):
        return 1
    from s3r.tune import DEFAULT_CONFIG, round_sizes

    n_trials = int(tune.get("n_trials", DEFAULT_CONFIG["n_trials"]))
    return max(round_sizes(n_trials, int(tune.get("rounds", DEFAULT_CONFIG["rounds"]))))


def plan_chunks(config: dict, specs: dict[str, SampleSpec]) -> dict[str, dict[str, list[str]]]:
    """{sample: {chunk name: targets}}: consecutive targets in sheet order, chunks of (nearly) equal size."""
    plan = {}
    for name, spec in specs.items():
        size = min(targets_per_job(config, spec), len(spec.targets))
        count = -(-len(spec.targets) // size)
        base, extra = divmod(len(spec.targets), count)
        chunks, at = {}, 0
        for c in range(count):
            take = base + (1 if c < extra else 0)
            chunks[f"c{c}"] = list(spec.targets[at:at + take])
            at += take
        plan[name] = chunks
    return plan


def fit_dir(sample: str, chunk: str, target: str) -> str:
    """Where a target's final fit lives: inside its chunk's directory (the per-target view every reader uses)."""
    return f"results/fits/{sample}/{chunk}/{target}"


def tune_dir(sample: str, chunk: str, target: str) -> str:
    """A target's tuning directory (best_params.json, trials.tsv, round_*/results.json), as ``s3r tune`` writes it."""
    return f"results/tune/{sample}/{chunk}/targets/{target}"


# Job resources from the input size (minutes and MB for Snakemake's runtime and mem_mb); an out-of-memory kill
# is retried (rule `retries`) with the memory doubled per attempt.
SECONDS_PER_ENTRY = {"tune_fold": 2e-5, "fit_final": 4e-4}  # CPU, per (spot, feature, problem); GPUs are faster


def job_resources(rule: str, n_spots: int, n_features: int, n_problems: int, attempt: int = 1) -> dict[str, int]:
    """``mem_mb`` and ``runtime`` (minutes) of one job solving ``n_problems`` batched problems of n × p."""
    entries = max(1, n_spots) * max(1, n_features) * max(1, n_problems)
    scale = 2 ** (max(1, int(attempt)) - 1)
    mem_mb = (1500 + entries * BYTES_PER_ENTRY // 2**20) * scale
    runtime = (10 + entries * SECONDS_PER_ENTRY[rule] / 60) * scale
    return {"mem_mb": int(mem_mb), "runtime": int(runtime)}


def chunk_resources(rule: str, config: dict, spec: SampleSpec, n_targets: int, attempt: int = 1) -> dict[str, int]:
    """:func:`job_resources` for a chunk of ``n_targets`` targets of ``spec`` (fold jobs: one round's trials each)."""
    n_spots, n_features = problem_size(spec, config) or (10_000, 100)
    if rule == "tune_fold":
        n_spots = _tuned_spots(config, n_spots)
    problems = n_targets * (_trials_per_round(config) if rule == "tune_fold" else 1)
    return job_resources(rule, n_spots, n_features, problems, attempt)


# The order jobs start in when cores are short (Snakemake's `priority`; higher first). Without it the local
# scheduler interleaved the chunks round by round, every chunk finished tuning at once, and the selections, final fits
# and reports of all of them ran at the end (200 DLPFC targets, 3 chunks: the last 372 of 2,018 s). Chunk by chunk
# (each chunk's tuning before the next's) left a core idle at every round barrier of the last chunk instead (2,014 s).
# So a sample's first chunk tunes first — its selection, fit and report then run while the others tune — and the
# others interleave, filling each other's round barriers; a tuned chunk's jobs go before any tuning job. Replayed on
# that run's job durations (benchmarks/schedule_replay.py; benchmarks/README.md, session 26): 1,929 s against 2,011
# chunk by chunk (the run itself: 2,014) and 1,950 without priorities; 1,912 is the two cores' floor.
def chunk_priority(chunks: list[str], chunk: str, *, after_tuning: bool = False) -> int:
    """Snakemake priority of a job of ``chunk`` (one of the sample's ``chunks``): tuning jobs 2 for the first chunk,
    1 for the others; with ``after_tuning`` (selection, final fit, report) 3, above every tuning job."""
    return 3 if after_tuning else (2 if chunk == chunks[0] else 1)


# Below this many spots the final fit is fastest on one CPU thread: the compiled PDHG loop (s3r.solver.fused_cpu)
# runs there and batches of targets stay in cache; above it torch's threaded step is faster (10⁵ spots: 111 s on one
# thread against 73 s on two; benchmarks/README.md, session 25). 67 DLPFC targets, 3,592 spots: 24.4 s wall on one
# thread against 26.0 on two (31.1 CPU-s).
ONE_THREAD_SPOTS = 20_000


def fit_threads(config: dict, spec: SampleSpec, wanted: int = 2) -> int:
    """CPU threads of a sample's final-fit job: one on sections below :data:`ONE_THREAD_SPOTS`, else ``wanted``."""
    size = problem_size(spec, config)
    return 1 if size is not None and size[0] < ONE_THREAD_SPOTS else int(wanted)
