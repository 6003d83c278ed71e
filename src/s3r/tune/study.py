"""The Optuna side: proposing a round's trials (Latin hypercube, then TPE) and exporting the study for the dashboard."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3r.errors import S3RInputError
from s3r.io import atomic_path, write_json
from s3r.tune.files import _load_results, read_json
from s3r.tune.space import FORMAT, _distributions, _full_params, _relative, resolve_config, round_sizes


def _sampler_seed(seed: int, n_trials: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(n_trials)]).generate_state(1)[0])


def suggest(config: dict, previous: Sequence = (), out=None) -> dict:
    """Propose the next round's parameter sets from the earlier rounds' results.json files.

    Round 0 is a seeded, discrepancy-optimised Latin hypercube (space filling, so TPE starts from a spread
    of the whole box); later rounds ask TPE, rebuilt from all earlier trials in trial-number order and seeded
    from (seed, number of trials), for a batch at once (constant liar keeps the batch spread out).
    """
    import optuna

    config = resolve_config(config)
    docs = [item if isinstance(item, dict) else read_json(item) for item in previous]
    history = _load_results(docs)
    r = len(previous)
    sizes = round_sizes(config["n_trials"], config["rounds"])
    if r >= len(sizes):
        raise S3RInputError(f"all {len(sizes)} rounds are done; nothing left to suggest")
    stopped = stop_reason(docs, config) if r > 0 and config["stop_early"] else None
    if stopped is not None:
        doc = {"format": FORMAT, "round": r, "sampler": None, "sampler_seed": None, "distributions": _json_distributions(config),
               "trials": [], "stopped": stopped}
        if out is not None:
            write_json(doc, out)
        return doc
    distributions = _distributions(config)
    batch = sizes[r]
    sampler_seed = _sampler_seed(config["seed"], len(history))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if r == 0:
        sampler_name = "latin_hypercube"
        tuned = _latin_hypercube(distributions, batch, sampler_seed)
    else:
        sampler_name = "tpe"
        sampler = optuna.samplers.TPESampler(seed=sampler_seed, multivariate=True, constant_liar=True, n_startup_trials=sizes[0])
        study = optuna.create_study(direction="minimize", sampler=sampler)
        for trial in history:
            study.add_trial(_frozen(trial, distributions))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            asked = [study.ask(distributions) for _ in range(batch)]
        tuned = [dict(t.params) for t in asked]
    start = len(history)
    doc = {
        "format": FORMAT,
        "round": r,
        "sampler": sampler_name,
        "sampler_seed": sampler_seed,
        "distributions": _json_distributions(config),
        "trials": [_new_trial(config, start + i, r, t) for i, t in enumerate(tuned)],
    }
    if out is not None:
        write_json(doc, out)
    return doc


def stop_reason(docs: Sequence[dict], config: dict) -> str | None:
    """Why a target's search ends before its last round, or None to go on.

    It ends when a yardstick (the intercept-only model, the spatial trend without features; recorded by ``tell``)
    beats even the best trial so far by more than the standard error of their paired fold differences — the mirror
    of the verdict's test for an effect. Measured on 30 DLPFC 151675 genes (benchmarks/README.md, session 17): 10
    stopped after round 1, none of which the full search found an effect for; stopping wherever no trial beats the
    lower yardstick at all stopped 18 but lost three effects (each ~0.1 % of the held-out loss) that rounds 2–3 found."""
    from s3r.tune.selection import paired_gain, yardsticks

    done = [t for d in docs for t in d["trials"] if t.get("value") is not None and math.isfinite(t["value"])]
    null, trend, earlier = yardsticks(docs)
    if earlier is not None or not done:
        return earlier
    best = min(done, key=lambda t: (t["value"], t["number"]))
    for name, stick in (("intercept-only", null), ("spatial trend", trend)):
        if stick is None:
            continue
        gain, se = paired_gain(best, stick)
        if gain < -se:
            rounds = len(round_sizes(config["n_trials"], config["rounds"]))
            return (f"search stopped after round {len(docs)} of {rounds}: the {name} model beats even the best of its "
                    f"{len(done)} trials (held-out loss {stick['value']:.4g} against {best['value']:.4g}, by "
                    f"{-gain:.3g} ± {se:.2g} SE)")
    return None


def _json_distributions(config: dict) -> dict:
    import optuna

    return {name: optuna.distributions.distribution_to_json(d) for name, d in _distributions(config).items()}


def _new_trial(config: dict, number: int, r: int, tuned: dict) -> dict:
    """A proposed trial: its point in the search space; absolute λ, α, β too when they need no data."""
    trial = {"number": number, "round": r, "search": {name: float(v) for name, v in tuned.items()}}
    if not _relative(config):
        trial["params"] = _full_params(config, tuned)
    return trial


def _search_point(trial: dict, distributions) -> dict:
    """The trial's coordinates in the search space (files of the earlier format hold only absolute params)."""
    point = trial.get("search") or trial["params"]
    return {name: point[name] for name in distributions}


def _latin_hypercube(distributions: dict, size: int, seed: int) -> list[dict]:
    from scipy.stats import qmc

    names = list(distributions)
    if not names:
        return [{} for _ in range(size)]
    unit = qmc.LatinHypercube(d=len(names), optimization="random-cd", rng=np.random.default_rng(seed)).random(size)
    points = []
    for row in unit:
        point = {}
        for name, u in zip(names, row):
            d = distributions[name]
            if d.log:
                point[name] = float(math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low))))
            else:
                point[name] = float(d.low + u * (d.high - d.low))
        points.append(point)
    return points


def _frozen(trial: dict, distributions: dict):
    import optuna

    params = _search_point(trial, distributions)
    attrs = {key: trial[key] for key in ("round", "std", "se", "fold_losses", "converged") if key in trial}
    value = trial.get("value")
    if value is None or not math.isfinite(value):
        return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params, distributions=distributions, user_attrs=attrs)
    return optuna.trial.create_trial(value=float(value), params=params, distributions=distributions, user_attrs=attrs)


def export_study(results: Sequence, config: dict, path, study_name: str = "s3r-tune") -> Path:
    """Write the whole study once to an Optuna journal file (``optuna-dashboard PATH`` opens it).

    Written by one process at the end into a temporary file that replaces ``path``, so no job ever shares
    a journal (journal files get corrupted on network filesystems under concurrent appends).
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    config = resolve_config(config)
    trials = _load_results(results)
    distributions = _distributions(config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(path)
    with atomic_path(path) as tmp:
        storage = JournalStorage(JournalFileBackend(str(tmp), lock_obj=JournalFileOpenLock(str(tmp))))
        study = optuna.create_study(storage=storage, study_name=study_name, direction="minimize")
        for key in ("seed", "fold_scheme", "folds", "selection", "predictor"):
            study.set_user_attr(key, config[key])
        study.set_user_attr("model", config["model"])
        for trial in trials:
            study.add_trial(_frozen(trial, distributions))
    lock = Path(str(tmp) + ".lock")
    if lock.exists():
        lock.unlink()
    return path
