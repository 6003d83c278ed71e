"""The whole search in one process, through the very functions (and files) the workflow runs as separate jobs."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from s3r.io import RegressionData, write_csv, write_json
from s3r.tune.evaluate import evaluate_fold, make_folds, make_problem, tell
from s3r.tune.files import read_json, round_dir, write_tables
from s3r.tune.selection import select
from s3r.tune.space import _relative, resolve_config
from s3r.tune.study import export_study, suggest
from s3r.tune.variants import is_choice, model_variants, pick_variant
from s3r.tune.window import on_window, section_scales, window_index, window_record


def default_workers(config: dict) -> int:
    """Folds solved at once: one per CPU core on a CPU (each single-threaded), one on a GPU."""
    from s3r.solver import resolve_device

    if resolve_device(config["solver"]["device"]).type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(config["folds"], cores))


def run_search(data: RegressionData, config: dict | None, out_dir, *, workers: int | None = None, keep_states: bool = False,
               progress: Callable[[str], None] | None = None, offset=None) -> dict:
    """All rounds with the very functions (and files) the workflow runs as separate jobs.

    Folds of a round run in ``workers`` threads. On a CPU each fold is solved single-threaded: these
    problems are too small for torch's intra-op threads to pay off, and on a shared machine spinning
    threads cost more than they give; one fold per core keeps every core busy instead. Results do not
    depend on ``workers``. The warm-start states (round_*/fold_*.npz, ~1 MB per trial and fold at 1,000 × 100)
    are deleted at the end unless ``keep_states``. A section of more than ``max_spots`` spots is searched on a window
    of that many (:mod:`s3r.tune.window`; folds.tsv lists its spots). Where the model lists several forms (``s3r.tune.variants``),
    each is searched in full in ``forms/<form>/`` and the chosen one's rounds are copied here.
    """
    config = resolve_config(config)
    workers = default_workers(config) if workers is None else max(1, int(workers))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(config, out_dir / "config.json")
    start = time.perf_counter()
    index = window_index(data.coords, config)
    window = window_record(index, data.n_spots)
    section, section_offset = data, offset
    data, offset = on_window(data, index, offset)
    if window and progress:
        progress(f"searching on a window of {window['spots']:,} of the section's {window['of']:,} spots")
    choice = None
    if is_choice(config):
        forms = {label: _rounds(data, variant, out_dir / "forms" / label, workers, progress, offset, window,
                                 section_scales(section, variant, index, section_offset))
                 for label, variant in model_variants(config)}
        label, choice = pick_variant({k: [read_json(path) for path in paths] for k, paths in forms.items()})
        config = dict(model_variants(config))[label]
        for r in range(config["rounds"]):
            shutil.copytree(round_dir(out_dir / "forms" / label, r), round_dir(out_dir, r), dirs_exist_ok=True)
        write_json(config, out_dir / "config.json")
        shutil.copyfile(out_dir / "forms" / label / "folds.tsv", out_dir / "folds.tsv")
        results = [round_dir(out_dir, r) / "results.json" for r in range(config["rounds"])]
    else:
        results = _rounds(data, config, out_dir, workers, progress, offset, window,
                          section_scales(section, config, index, section_offset))
    best = select(results, config, out_dir / "best_params.json")
    if choice is not None:
        best["model_choice"] = choice
        write_json(choice, out_dir / "model_choice.json")
    write_tables(results, out_dir)
    export_study(results, config, out_dir / "study.journal")
    if not keep_states:
        for state in out_dir.glob("**/round_*/fold_*.npz"):
            state.unlink()
    best["seconds"] = time.perf_counter() - start
    return best


def _rounds(data, config: dict, out_dir: Path, workers: int, progress, offset, window: dict | None = None,
            scales: dict | None = None) -> list[Path]:
    """Every round of one model form in ``out_dir``; the results.json paths. ``scales``: the whole section's natural
    scales when ``data`` is its window (else the data's own)."""
    import torch
    from concurrent.futures import ThreadPoolExecutor

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    problem = make_problem(data, config, offset)
    folds = make_folds(problem.coords, config)
    if scales is None and _relative(config):
        scales = problem.natural_scales()
    write_csv(pd.DataFrame({"spot": data.spot_ids, "fold": folds}), out_dir / "folds.tsv", sep="\t", index=False)
    saved_threads = torch.get_num_threads()
    if problem.device.type == "cpu":
        torch.set_num_threads(1)
    results, announced = [], False  # announced: an early stop said once, not per empty round
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for r in range(config["rounds"]):
                rd = round_dir(out_dir, r)
                trials = suggest(config, results, rd / "trials.json")

                def run_fold(k, rd=rd, trials=trials, r=r):
                    warm = [round_dir(out_dir, q) / f"fold_{k}.npz" for q in range(r)]
                    evaluate_fold(None, config, trials, k, rd / f"fold_{k}.json", warm_from=warm, problem=problem, scales=scales,
                                  window=window)
                    return rd / f"fold_{k}.json"

                stopped = trials.get("stopped")  # an empty round: its folds are written, nothing is solved
                fold_files = []
                for k, path in enumerate(pool.map(run_fold, range(config["folds"]))):
                    fold_files.append(path)
                    if progress and not stopped:
                        progress(f"round {r + 1}/{config['rounds']}, fold {k + 1}/{config['folds']} done ({time.perf_counter() - start:.1f} s)")
                if progress and stopped and not announced:
                    last = config["rounds"]
                    progress(f"{f'round {last}' if r + 1 == last else f'rounds {r + 1}–{last}'} of {last} not run: {stopped}")
                    announced = True
                results.append(rd / "results.json")
                tell(trials, fold_files, results[-1])
    finally:
        torch.set_num_threads(saved_threads)
    return results
