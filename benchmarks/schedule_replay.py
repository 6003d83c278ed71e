"""Replay a finished workflow run's jobs on N cores under different Snakemake priorities (issue 13).

    python benchmarks/schedule_replay.py benchmarks/out/workflow_scale/targets_200/run.log [--cores 2]

Reads every job's rule, wildcards and duration from the run's Snakemake log (``workflow_scale.py run`` keeps it as
``run.log``), rebuilds the tuning DAG of each chunk (suggest → folds → tell per round, then select → final fit →
report, then the sample's closing jobs) and list-schedules it as Snakemake's greedy scheduler does: the ready jobs
by priority, each started when its threads are free (the report asks for two). Prints the wall time of each
priority rule and the floor (core-seconds over cores). The replay of the same rule as the run reproduces its wall
time (session 26: 2,014 s both), so the rules can be compared without a 35-minute run each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import re

THREADS = {"fit_report": 2}  # the rules' threads in the run (s3r.workflow: reports in two processes)


def parse(path: str) -> dict:
    """{(rule, chunk, round, fold): seconds} from a Snakemake log (the timestamps of start and finish)."""
    stamp, current, started, out = None, None, {}, {}
    for line in open(path).read().splitlines():
        if m := re.match(r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", line):
            stamp = dt.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := re.match(r"(?:local)?rule (\w+):", line):
            current = [m.group(1), stamp, {}]
        elif (m := re.match(r"\s+wildcards: (.*)", line)) and current:
            current[2] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
        elif (m := re.match(r"\s+jobid: (\d+)", line)) and current:
            started[int(m.group(1))] = current
        elif m := re.match(r"Finished jobid: (\d+)", line):
            rule, start, w = started[int(m.group(1))]
            out[(rule, w.get("chunk"), w.get("round"), w.get("fold"))] = (stamp - start).total_seconds()
    return out


def build(durations: dict) -> dict:
    """{job: (seconds, threads, dependencies, chunk, kind)} for every chunk's tuning, fits and reports."""
    chunks = sorted({k[1] for k in durations if k[0] == "tune_fold"}, key=lambda c: int(c[1:]))
    rounds = 1 + max(int(k[2]) for k in durations if k[0] == "tune_fold")
    folds = 1 + max(int(k[3]) for k in durations if k[0] == "tune_fold")
    get = lambda *key, default=1.0: durations.get(key, default)  # noqa: E731
    jobs = {}
    for c in chunks:
        for r in range(rounds):
            jobs[("suggest", c, r)] = (get("tune_suggest", c, str(r), None), 1, [("tell", c, r - 1)] if r else [], c, "tuning")
            for f in range(folds):
                jobs[("fold", c, r, f)] = (get("tune_fold", c, str(r), str(f)), 1, [("suggest", c, r)], c, "tuning")
            jobs[("tell", c, r)] = (get("tune_tell", c, str(r), None), 1, [("fold", c, r, f) for f in range(folds)], c, "tuning")
        jobs[("select", c)] = (get("tune_select", c, None, None), 1, [("tell", c, rounds - 1)], c, "after")
        jobs[("final", c)] = (get("fit_final", c, None, None), THREADS.get("fit_final", 1), [("select", c)], c, "after")
        jobs[("report", c)] = (get("fit_report", c, None, None), THREADS["fit_report"], [("final", c)], c, "after")
    closing = sum(durations.get((r, None, None, None), 0.0) for r in ("sample_report", "anndata", "summary"))
    jobs[("closing",)] = (closing, 1, [("report", c) for c in chunks], None, "closing")
    return jobs


def replay(jobs: dict, priority, cores: int) -> float:
    """Wall seconds of a greedy list schedule: at each finish, the ready jobs by priority, started while threads last."""
    done, running, started, now, free = set(), [], set(), 0.0, cores
    while len(done) < len(jobs):
        ready = [j for j in jobs if j not in started and all(d in done for d in jobs[j][2])]
        for j in sorted(ready, key=lambda j: (-priority(j, jobs[j]), str(j))):
            threads = min(jobs[j][1], cores)
            if threads <= free:
                free -= threads
                started.add(j)
                heapq.heappush(running, (now + jobs[j][0], str(j), j, threads))
        now, _, j, threads = heapq.heappop(running)
        free += threads
        done.add(j)
    return now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    jobs = build(parse(args.log))
    first = min((j[1] for j in jobs if j[0] == "fold"), key=lambda c: int(c[1:]))
    order = lambda job: int(job[3][1:]) if job[3] else 0  # noqa: E731
    rules = {
        "no priorities": lambda j, job: 0,
        "tuned chunks' jobs first": lambda j, job: int(job[4] == "after"),
        "chunk by chunk, tuned chunks' jobs first": lambda j, job: 100 if job[4] == "after" else -order(job),
        "first chunk first, the rest interleaved, tuned chunks' jobs first (the workflow's)":
            lambda j, job: 3 if job[4] == "after" else (2 if job[3] == first else 1),
    }
    for name, rule in rules.items():
        print(f"{replay(jobs, rule, args.cores):7.0f} s  {name}")
    print(f"{sum(v[0] * min(v[1], args.cores) for v in jobs.values()) / args.cores:7.0f} s  floor: core-seconds / {args.cores}")


if __name__ == "__main__":
    main()
