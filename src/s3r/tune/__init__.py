"""Cross-validated tuning of λ, α, β in synchronous rounds: suggest → evaluate each fold → tell → select.

Every step reads and writes small JSON files, so a workflow can run each as a separate job (one job per
fold, on a GPU) and ``run_search`` can run the same steps in one process. No database is shared by concurrent
jobs: the result files are the record, and ``suggest`` rebuilds the Optuna study from them in trial-number
order with a sampler seeded from (seed, number of trials), which makes the proposals reproducible.
The finished study is exported once to an Optuna journal file for ``optuna-dashboard``.

Files (``DIR/round_{r}/``): ``trials.json`` (suggest), ``fold_{k}.json`` and ``fold_{k}.npz`` (evaluate_fold:
losses, and the solutions later rounds warm-start from), ``results.json`` (tell); then ``best_params.json``
(select), ``trials.tsv``, ``fold_scores.tsv`` and ``study.journal``. See docs/CONTRACT.md, "s3r.tune".

The package: ``space`` (configuration, defaults, search space), ``study`` (suggest, the Optuna journal),
``evaluate`` (one fold's losses, tell), ``selection`` (select and the verdict), ``files`` (reading round files,
fold states and warm starts, the TSV tables), ``search`` (run_search), ``variants`` (the model form as a choice).
Every name is importable from ``s3r.tune``;
each submodule loads on first use, so the workflow's suggest and tell jobs do not import torch.
"""

from __future__ import annotations

from s3r.lazy import lazy_exports

_WHERE = {
    "evaluate": ("evaluate_fold", "evaluate_fold_targets", "make_folds", "make_problem", "tell"),
    "files": ("read_fold_state", "round_dir", "write_tables"),  # read_fold_state: the workflow's chunk jobs, the report
    "search": ("default_workers", "run_search"),
    "selection": ("EDGE", "NO_EFFECT", "_edge_warnings", "select"),  # _edge_warnings: the tests
    "space": ("DEFAULT_CONFIG", "FORMAT", "PARAM_NAMES", "SELECTIONS", "absolute_params", "resolve_config", "round_sizes"),
    "study": ("export_study", "suggest"),
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
