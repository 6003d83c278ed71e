"""The workflow at study scale (issue 13): DLPFC 151675 (3,592 spots) × 25 regulators × N target genes, default tuning.

    python benchmarks/workflow_scale.py plan            # snakemake -n job counts for 200 targets
    python benchmarks/workflow_scale.py run --targets 20  # the local profile end to end, wall time
    python benchmarks/workflow_scale.py fold --targets 2  # CPU seconds of one chunk fold job and one final fit
    python benchmarks/workflow_scale.py fold --targets 12 --torch-step  # the same with the torch PDHG step (side by side)
    python benchmarks/workflow_scale.py finals --chunk c1  # fit_final + fit_report of one chunk of a finished run
    python benchmarks/workflow_scale.py verdicts          # the run's "effect found" verdicts with the chosen trial converged

Regulators: the nine oligodendrocyte regulators the data README names, then the most variable other genes up to 25;
targets: genes drawn at random (seed 0) from the rest. Work directories go to benchmarks/out/workflow_scale/.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "real" / "dlpfc_151675.h5ad"
KNOWN = ["MYRF", "OLIG2", "SOX10", "OLIG1", "NKX6-2", "ZNF488", "SOX8", "ST18", "QKI"]


def choose_genes(n_targets: int, n_regulators: int = 25, seed: int = 0) -> tuple[list[str], list[str]]:
    import anndata

    adata = anndata.read_h5ad(DATA, backed="r")
    genes = [str(g) for g in adata.var_names]
    X = adata.X[:]
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    adata.file.close()
    logx = np.log1p(X / X.sum(1, keepdims=True) * 1e4)
    order = np.argsort(-logx.var(0), kind="stable")
    regulators = [g for g in KNOWN if g in genes]
    regulators += [genes[j] for j in order if genes[j] not in regulators][: n_regulators - len(regulators)]
    rest = [g for g in genes if g not in set(regulators)]
    targets = list(np.random.default_rng(seed).choice(rest, size=n_targets, replace=False))
    return regulators, targets


def workdir(n_targets: int) -> Path:
    regulators, targets = choose_genes(n_targets)
    out = REPO / "benchmarks" / "out" / "workflow_scale" / f"targets_{n_targets}"
    (out / "config").mkdir(parents=True, exist_ok=True)
    (out / "targets.txt").write_text("\n".join(targets) + "\n")
    (out / "config" / "samples.tsv").write_text(
        "sample\th5ad\ttargets\tfeatures\n" f"dlpfc\t{DATA}\t{out / 'targets.txt'}\t{','.join(regulators)}\n"
    )
    config = {"samples": "config/samples.tsv", "tune": {"enabled": True}, "perturbseq": {"enabled": False}}
    (out / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return out


def snakemake(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "--directory", str(out), *args]
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=out, capture_output=True, text=True)
    return result, time.perf_counter() - start


def job_counts(text: str) -> dict[str, int]:
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", text, re.M)}


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def fold_cost(n_targets: int, device: str = "cpu") -> None:
    """CPU time (process time, so a shared machine's load inflates it less than wall time) of the work of one
    round-0 fold job for a chunk of ``n_targets`` targets, and of one final fit, in this process; with ``device``
    "cuda" the same job as the workflow's GPU rule runs it (its whole batch at once), wall time after a synchronise."""
    import torch

    from s3r import S3R, tune
    from s3r.graph import build_graph
    from s3r.preprocess import prepare_h5ad
    from s3r.workflow.tuning import evaluate_chunk, suggest_chunk

    torch.set_num_threads(1)
    regulators, targets = choose_genes(n_targets)
    out = REPO / "benchmarks" / "out" / "workflow_scale" / f"fold_{n_targets}"
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare_h5ad(str(DATA), targets=targets, features=regulators, log=open(out / "prepare.log", "w"))
    graph = build_graph(prepared.coords, "knn", k=7)
    settings = tune.resolve_config({})
    suggest_chunk(settings, targets, [], out / "trials.json")
    wall, cpu = time.perf_counter(), time.process_time()
    evaluate_chunk(prepared, graph, settings, targets, out / "trials.json", 0, warm_from=[], out=out / "fold_0.json",
                   state_out=out / "fold_0.npz", device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    fold_wall, fold_cpu = time.perf_counter() - wall, time.process_time() - cpu
    data = prepared.regression_data(targets[0])
    import json

    trials = json.loads((out / "fold_0.json").read_text())["targets"][targets[0]]["trials"]
    best = min((t for t in trials if t["loss"] is not None), key=lambda t: t["loss"])["params"]  # a realistic final fit
    wall, cpu = time.perf_counter(), time.process_time()
    S3R(**best, device=device).fit(data.X, data.y, data.coords, spot_graph=graph)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    iterations = sum(t["iterations"] for v in json.loads((out / "fold_0.json").read_text())["targets"].values() for t in v["trials"])
    print(f"{prepared.X.shape[0]} spots × {prepared.X.shape[1]} regulators on {device}; fold job, {n_targets} targets × 10 "
          f"trials ({iterations} problem-iterations): {fold_cpu:.1f} s CPU ({fold_wall:.1f} s wall); one final fit: "
          f"{fit_cpu:.1f} s CPU ({fit_wall:.1f} s wall); load {load()}")


def finals(n_targets: int, chunk: str, out: Path) -> None:
    """Wall and CPU seconds of the final fits and per-target reports of one chunk, from a finished run's tuning
    outputs (``run --targets N`` first); compare two versions by running this twice at once with PYTHONPATH."""
    import inspect
    import json

    import torch

    from s3r.graph_io import read_graph
    from s3r.preprocess import read_prepared
    from s3r.report.fit_report import fit_report
    from s3r.workflow.tuning import fit_chunk

    torch.set_num_threads(1)
    results = REPO / "benchmarks" / "out" / "workflow_scale" / f"targets_{n_targets}" / "results"
    prepared, graph = read_prepared(results / "preprocessed" / "dlpfc.npz"), read_graph(results / "graphs" / "dlpfc.npz")
    params = results / "tune" / "dlpfc" / chunk / "targets"
    targets = sorted(p.name for p in params.iterdir() if (p / "best_params.json").is_file())
    wall, cpu = time.perf_counter(), time.process_time()
    fit_chunk(prepared, graph, targets, params, out / "fits", sample="dlpfc", device="cpu", inputs={})
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    png_only = {"vector": None} if "vector" in inspect.signature(fit_report).parameters else {}  # the workflow's default
    wall, cpu = time.perf_counter(), time.process_time()
    for t in targets:
        fit_report(out / "fits" / t, out / "report" / t, tune_dir=params / t, title=f"dlpfc / {t}", **png_only)
    rep_wall, rep_cpu = time.perf_counter() - wall, time.process_time() - cpu
    none = sum(json.loads((params / t / "best_params.json").read_text())["tuning"].get("effect_found") is False for t in targets)
    print(f"{chunk}: {len(targets)} targets ({none} no effect): final fits {fit_wall:.0f} s wall ({fit_cpu:.0f} s CPU), "
          f"reports {rep_wall:.0f} s wall ({rep_cpu:.0f} s CPU); load {load()}")


def verdicts(n_targets: int, max_iter: int = 20_000) -> None:
    """Every "effect found" verdict of a finished run re-judged with the chosen trial solved to the tuning's tolerance on
    every fold (cold, ``max_iter``), not at the tuning's iteration cap: a truncated solve is an early-stopped, more
    regularised estimate, and the verdict compares CV losses that differ by tenths of a per cent."""
    import json

    import torch

    from s3r import cv, tune
    from s3r.graph_io import read_graph
    from s3r.preprocess import read_prepared
    from s3r.tune.evaluate import make_folds
    from s3r.tune.selection import paired_gain, yardsticks

    torch.set_num_threads(1)
    results = REPO / "benchmarks" / "out" / "workflow_scale" / f"targets_{n_targets}" / "results"
    prepared, graph = read_prepared(results / "preprocessed" / "dlpfc.npz"), read_graph(results / "graphs" / "dlpfc.npz")
    config = tune.resolve_config({})
    changed = total = 0
    for path in sorted((results / "tune" / "dlpfc").glob("c*/targets/*/best_params.json")):
        chosen = json.loads(path.read_text())
        if not chosen["tuning"].get("effect_found"):
            continue
        rounds = sorted(path.parent.glob("round_*/results.json"), key=lambda p: int(p.parent.name.split("_")[1]))
        docs = [json.loads(p.read_text()) for p in rounds]
        null, trend, _ = yardsticks(docs)
        capped = next(t for d in docs for t in d["trials"] if t["number"] == chosen["tuning"]["trial"])
        problem = tune.make_problem(prepared.regression_data(path.parent.name), config, prepared.offset, graph=graph)
        folds = make_folds(problem.coords, config)
        params = {k: chosen["params"][k] for k in tune.PARAM_NAMES}
        losses, its = [], []
        for k in range(config["folds"]):
            solution = cv.solve_fold(problem, [params], folds, k, tol=config["solver"]["tol"], max_iter=max_iter)
            losses.append(float(cv.fold_losses(problem, solution, folds, k, config["predictor"], k=config["model"]["k"])[0]))
            its.append(int(solution.iterations[0]))
        solved = {"fold_losses": losses, "value": float(np.mean(losses))}
        effect = lambda trial: all(g > se and g > 0 for g, se in (paired_gain(trial, s) for s in (null, trend) if s))  # noqa: E731
        total += 1
        changed += effect(capped) != effect(solved)
        print(f"{path.parent.name}: CV loss {capped['value']:.5g} at the cap, {solved['value']:.5g} solved "
              f"({100 * (solved['value'] / capped['value'] - 1):+.2f} %; {max(its)} iterations at most); effect "
              f"{effect(capped)} → {effect(solved)}", flush=True)
    print(f"{changed} of {total} verdicts change; load {load()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["plan", "run", "fold", "finals", "verdicts"])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--chunk", default="c1", help="finals: the chunk of the finished run to refit and report")
    parser.add_argument("--out", type=Path, default=None, help="finals: where the fits and reports go")
    parser.add_argument("--device", default="cpu", help="fold: cpu or cuda (the workflow's GPU rule)")
    parser.add_argument("--cores", type=int, default=2, help="run: snakemake --cores")
    parser.add_argument("--gpus", type=int, default=0, help="run: snakemake --resources gpu=N (the GPU rules' resource)")
    parser.add_argument("--torch-step", action="store_true", help="fold: the torch PDHG step instead of the compiled CPU loop "
                        "(s3r.solver.fused_cpu), for side-by-side runs")
    args = parser.parse_args()
    if args.mode == "fold":
        if args.torch_step:
            import s3r.solver.fused_cpu

            s3r.solver.fused_cpu.ENABLED = False
        fold_cost(args.targets, args.device)
        return
    if args.mode == "finals":
        finals(args.targets, args.chunk, args.out or REPO / "benchmarks" / "out" / "workflow_scale" / f"finals_{args.chunk}")
        return
    if args.mode == "verdicts":
        verdicts(args.targets)
        return
    out = workdir(args.targets)
    if args.mode == "plan":
        result, seconds = snakemake(out, "-n")
        counts = job_counts(result.stdout + result.stderr)
        print(f"{args.targets} targets: {counts.get('total')} jobs planned ({seconds:.1f} s parse + plan, load {load()}): {counts}")
        return
    print(f"start, load {load()}", flush=True)
    result, seconds = snakemake(out, "--profile", str(REPO / "profiles" / "local"), "--cores", str(args.cores), "--resources", f"gpu={args.gpus}")
    text = result.stdout + result.stderr
    (out / "run.log").write_text(text)
    done = re.findall(r"(\d+) of (\d+) steps", text)
    print(f"{args.targets} targets: exit {result.returncode}, {seconds:.0f} s wall, jobs {done[-1] if done else '?'}, load at end {load()}")


if __name__ == "__main__":
    main()
