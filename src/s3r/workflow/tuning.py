"""The workflow's tuning and fitting jobs for a chunk of targets of one sample (see :mod:`s3r.workflow.chunks`).

Each target keeps its own Optuna study (its own trials.json, results.json and choice, exactly as ``s3r tune``
makes them); a chunk only puts the targets' documents side by side in one file per step, keyed by target, and
solves their trials of a round on one fold in one batched program. The chunk's last tuning step writes every
target's tuning directory in ``s3r tune``'s layout, which the report reads as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from s3r import tune
from s3r.artifacts import VERDICT_KEYS
from s3r.errors import S3RInputError
from s3r.io import write_json

__all__ = ["CHUNK_FORMAT", "suggest_chunk", "evaluate_chunk", "tell_chunk", "select_chunk", "fit_chunk", "write_config_params"]

CHUNK_FORMAT = "s3r-tune-chunk/1"  # {"format", "round", "targets": {target: the per-target document}}


def _read_chunk(path) -> dict:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise S3RInputError(f"{path}: cannot read this tuning file ({err}); delete it and rerun the job that wrote it") from None
    if doc.get("format") != CHUNK_FORMAT:
        raise S3RInputError(f"{path}: not a chunk tuning file (format {doc.get('format')!r}); delete it and rerun")
    return doc


def _targets_of(doc: dict, targets: list[str], path) -> dict:
    missing = [t for t in targets if t not in doc["targets"]]
    if missing:
        raise S3RInputError(f"{path}: no entry for target {missing[0]!r}; the chunk's targets changed, delete results/tune and rerun")
    return doc["targets"]


def suggest_chunk(settings: dict, targets: list[str], previous: list, out) -> dict:
    """Each target's next batch of trials from its own earlier rounds (``tune.suggest`` per target)."""
    earlier = [_targets_of(_read_chunk(p), targets, p) for p in previous]
    docs = {t: tune.suggest(settings, [e[t] for e in earlier]) for t in targets}
    doc = {"format": CHUNK_FORMAT, "round": len(previous), "targets": docs}
    write_json(doc, out)
    return doc


def evaluate_chunk(prepared, graph, settings: dict, targets: list[str], trials, fold: int, *, warm_from: list, out, state_out,
                   device: str = "cpu") -> dict:
    """Every target's trials of one round on one fold, solved together (``tune.evaluate_fold_targets``).

    ``prepared``: the sample's PreparedSample; ``graph``: the graph rule ``graph`` wrote (not rebuilt here).
    The states of all targets go to one .npz, keys prefixed ``t<i>.`` by the target's place in the chunk.
    """
    from s3r.tune.files import read_fold_states, write_fold_states
    from s3r.tune.window import on_window, section_scales, window_index, window_record

    config = tune.resolve_config({**settings, "solver": {**settings.get("solver", {}), "device": device}})
    docs = _targets_of(_read_chunk(trials), targets, trials)
    # a section larger than max_spots is searched on its window (the same spots in every job: a function of the
    # coordinates alone) in the section's own search box; the final fit runs on every spot
    index = window_index(prepared.coords, config)
    sections = {t: prepared.regression_data(t) for t in targets}
    scales = {t: section_scales(sections[t], config, index, prepared.offset, graph) for t in targets}
    window_graph = graph if index is None else graph.subgraph(index)
    problems = {}
    for t in targets:
        data, offset = on_window(sections[t], index, prepared.offset)
        problems[t] = tune.make_problem(data, config, offset, graph=window_graph)
    # a target whose search has stopped has no trials to start: its earlier states are not read
    live = {f"t{i}.": t for i, t in enumerate(targets) if docs[t]["trials"]}
    stores = [read_fold_states(p, list(live)) for p in warm_from]
    warm = {t: [store[prefix] for store in stores] for prefix, t in live.items()}
    results, states = tune.evaluate_fold_targets(problems, config, docs, fold, warm=warm, scales=scales,
                                                 window=window_record(index, len(prepared.spot_ids)))
    write_fold_states(state_out, {f"t{i}.": states[t] for i, t in enumerate(targets)})
    doc = {"format": CHUNK_FORMAT, "round": next(iter(docs.values()))["round"], "fold": int(fold), "targets": results}
    write_json(doc, out)
    return doc


def tell_chunk(trials, folds: list, targets: list[str], out) -> dict:
    """Mean and spread of each target's held-out losses over the folds (``tune.tell`` per target)."""
    docs = _targets_of(_read_chunk(trials), targets, trials)
    fold_docs = [_targets_of(_read_chunk(f), targets, f) for f in folds]
    results = {t: tune.tell(docs[t], [f[t] for f in fold_docs]) for t in targets}
    doc = {"format": CHUNK_FORMAT, "round": next(iter(docs.values()))["round"], "targets": results}
    write_json(doc, out)
    return doc


def select_chunk(settings: dict, model: dict, targets: list[str], results: list, states: dict, sample: str, out_dir,
                 trials_table=None) -> None:
    """Each target's choice and its tuning directory in ``s3r tune``'s layout (``out_dir/<target>/``); with
    ``trials_table``, every target's trials.tsv in one table (a ``target`` column first) for the report.

    ``states``: {(round, fold): path of the chunk's fold_<k>.npz}. Only the chosen trial's fold solutions are
    copied into the target's round_r/fold_k.npz: the report counts in how many folds each feature was selected;
    the chunk's full states (every trial of every target) are temporary and go once this step has run.
    """
    from s3r.artifacts import write_params
    from s3r.tune.files import read_fold_states, write_fold_states

    rounds = [_targets_of(_read_chunk(p), targets, p) for p in results]
    choices = {target: tune.select([r[target] for r in rounds], settings) for target in targets}
    prefixes = [f"t{i}." for i in range(len(targets))]
    for (r, k), path in sorted(states.items()):  # each chunk state file opened once
        for target, state in zip(targets, read_fold_states(path, prefixes).values()):
            keep = np.flatnonzero(state["numbers"] == choices[target]["trial"])
            if keep.size:
                write_fold_states(Path(out_dir) / target / f"round_{r}" / f"fold_{k}.npz",
                                  {"": {"numbers": state["numbers"][keep], "W": state["W"][:, keep, :]}})
    for target in targets:
        docs, chosen = [r[target] for r in rounds], choices[target]
        where = Path(out_dir) / target
        for r, doc in enumerate(docs):
            write_json(doc, where / f"round_{r}" / "results.json")
        tune.write_tables(docs, where)
        tune.export_study(docs, settings, where / "study.journal")
        params = {**model, **{name: chosen[name] for name in tune.PARAM_NAMES}}
        write_params(where / "best_params.json", params, source="tune", tuning=chosen, sample=sample, target=target)
    if trials_table is not None:
        import pandas as pd

        from s3r.io import write_csv

        tables = [pd.read_csv(Path(out_dir) / t / "trials.tsv", sep="\t").assign(target=t) for t in targets]
        table = pd.concat(tables, ignore_index=True)
        write_csv(table[["target", *[c for c in table.columns if c != "target"]]], trials_table, sep="\t", index=False)


def write_config_params(settings: dict, targets: list[str], sample: str, out_dir) -> None:
    """Without tuning: every target's parameter file from config 'model' and the sample's overrides."""
    from s3r.artifacts import write_params

    for target in targets:
        write_params(Path(out_dir) / target / "best_params.json", dict(settings), source="config", sample=sample, target=target)




def fit_chunk(prepared, graph, targets: list[str], params_dir, out_dir, *, sample: str, device: str, inputs: dict, log=None,
              no_effect: str = "intercept_only") -> None:
    """The final fit of every target of a chunk (the tuned or configured parameters), one fit directory each.

    ``no_effect``: the final model of a target whose tuning found no effect — ``intercept_only`` (every coefficient
    zero, certified without a solve: the model the cross-validation supports, and no noise maps to draw) or
    ``chosen_trial`` (the trial the selection rule chose, fitted and reported under its "no effect" verdict).
    """
    from s3r import S3R
    from s3r.artifacts import read_params_file
    from s3r.fit_targets import check_no_effect, fit_targets, tuned_final_model
    from s3r.tune.files import chosen_start, start_shape
    from s3r.counts import describe
    from s3r.results import write_fit

    check_no_effect(no_effect)  # before any file is read
    chosen = {target: read_params_file(Path(params_dir) / target / "best_params.json") for target in targets}
    data = {target: prepared.regression_data(target) for target in targets}
    first = data[targets[0]]
    if log is not None:
        print(f"{sample}: {len(targets)} targets fitted together, {first.n_spots} spots, {first.n_features} features, device {device}",
              file=log, flush=True)
    models, starts, finals = [], [], {}
    for t in targets:
        model, finals[t], replaced = tuned_final_model(S3R(**chosen[t]["params"], device=device), chosen[t]["tuning"], first.X, data[t].y,
                                             first.coords, no_effect=no_effect, covariates=first.covariates, spot_graph=graph,
                                             offset=prepared.offset)
        models.append(model)
        starts.append(None if replaced else chosen_start(Path(params_dir) / t, start_shape(model, first.n_spots, first.n_features)))
    # the targets share the design, graph and covariates: one batched solve (s3r.fit_targets; one by one where they cannot)
    models = fit_targets(models, first.X, [data[t].y for t in targets], first.coords, covariates=first.covariates,
                         spot_graph=graph, offset=prepared.offset, starts=starts)
    for target, model in zip(targets, models):
        data_t = data[target]
        tuning = chosen[target]["tuning"] or {}
        final = finals[target]
        write_fit(
            Path(out_dir) / target, model, data_t,
            params={"sample": sample, "params_source": chosen[target]["source"] or "unknown",
                    **{k: tuning[k] for k in VERDICT_KEYS if k in tuning}, **({"final_model": final} if final else {})},
            inputs=inputs, offset=prepared.offset, normalisation=describe(prepared.info),
        )
        if log is not None:
            print(f"{sample}/{target}:", model.report_, file=log, flush=True)
