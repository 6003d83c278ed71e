"""Georgia (issue 17): which model form and which selection rule would close the gap to GWR? Measured offline.

``search``: for every outer fold of ``georgia_gwr.py`` (same spatially blocked folds), the nested default search
once per model form (tv / quadratic, without / with a spatial intercept), kept under DIR with its CPU seconds.
``score``: from the kept searches, the outer RMSE of every (form or form choice, selection rule): ``best``,
``one_se`` (the library's select) and ``paired`` (``selection_rules.paired_one_se``); the form choice keeps, per
outer fold, the form whose best trial has the lowest inner CV loss (``s3r.tune.variants``' rule). Every figure is
one refit on all 159 counties with the held-out ones at weight 0, as ``georgia_gwr.py`` does.

    python benchmarks/georgia_forms.py search DIR
    python benchmarks/georgia_forms.py score DIR [--forms tv,quadratic,tv+si,quadratic+si]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from georgia_gwr import FEATURES, FOLD_SCHEME, FOLD_SEED, N_FOLDS, TARGET, load_georgia, rmse
from realistic_grid import estimator_kwargs
from selection_rules import paired_one_se

FORMS = {"tv": ("tv", False), "quadratic": ("quadratic", False), "tv+si": ("tv", True), "quadratic+si": ("quadratic", True)}


def cmd_search(root: Path) -> None:
    from s3r import tune
    from s3r.cv import make_folds
    from s3r.io import RegressionData

    y, X, coords, ids, _ = load_georgia()
    folds = make_folds(coords, N_FOLDS, FOLD_SCHEME, seed=FOLD_SEED)
    for f in range(N_FOLDS):
        train = folds != f
        data = RegressionData(X[train], y[train], coords[train], [ids[i] for i in np.flatnonzero(train)], list(FEATURES), TARGET)
        for name, (smooth, si) in FORMS.items():
            where = root / f"fold{f}" / name
            if (where / "best_params.json").exists():
                continue
            cpu = time.process_time()
            tune.run_search(data, {"model": {"smooth": smooth, "spatial_intercept": si}}, where, workers=1)
            cost = {"cpu_s": time.process_time() - cpu, "load": os.getloadavg()}
            (where / "cost.json").write_text(json.dumps(cost))
            print(f"fold {f} {name}: {cost['cpu_s']:.1f} CPU s, load {cost['load'][0]:.1f}", flush=True)


def _trials(where: Path) -> tuple[list[Path], list[dict]]:
    files = sorted(where.glob("round_*/results.json"))
    return files, [t for f in files for t in json.loads(f.read_text())["trials"] if t["state"] == "COMPLETE"]


def _choose(where: Path, rule: str) -> dict:
    from s3r import tune

    config = json.loads((where / "config.json").read_text())
    files, trials = _trials(where)
    doc = tune.select(files, {**config, "selection": "best" if rule == "paired" else rule})
    if rule != "paired":
        return doc
    pick = paired_one_se(trials, min(trials, key=lambda t: (t["value"], t["number"])))
    return {**doc, **pick["params"], "trial": pick["number"], "cv_loss": pick["value"]}


def cmd_score(root: Path, forms: list[str]) -> None:
    from s3r import S3R
    from s3r.cv import make_folds

    y, X, coords, _, _ = load_georgia()
    folds = make_folds(coords, N_FOLDS, FOLD_SCHEME, seed=FOLD_SEED)
    lowest = lambda f: min(forms, key=lambda u: (min(t["value"] for t in _trials(root / f"fold{f}" / u)[1]), forms.index(u)))  # noqa: E731
    for rule in ("best", "one_se", "paired"):
        for form in [*forms, "choice"]:
            pred, picks = np.full(len(y), np.nan), []
            for f in range(N_FOLDS):
                picks.append(lowest(f) if form == "choice" else form)
                kwargs, _ = estimator_kwargs(_choose(root / f"fold{f}" / picks[-1], rule))
                test = folds == f
                model = S3R(**kwargs).fit(X, y, coords, sample_weight=(~test).astype(np.float64))
                pred[test] = np.asarray(model.predict(X))[test]
            per_fold = " ".join(f"{rmse(pred[folds == f], y[folds == f]):.3f}" for f in range(N_FOLDS))
            print(f"{rule:7s} {form:13s} pooled {rmse(pred, y):.3f} | folds {per_fold}" + (f" | {picks}" if form == "choice" else ""), flush=True)
    cpu = {u: [json.loads((root / f"fold{f}" / u / "cost.json").read_text())["cpu_s"] for f in range(N_FOLDS)] for u in forms}
    print("search CPU s per outer fold: " + "; ".join(f"{u} {np.mean(v):.1f}" for u, v in cpu.items())
          + f"; all listed forms {np.mean(np.sum(list(cpu.values()), axis=0)):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cmd", choices=("search", "score"))
    parser.add_argument("dir")
    parser.add_argument("--forms", default=",".join(FORMS))
    args = parser.parse_args()
    if args.cmd == "search":
        cmd_search(Path(args.dir))
    else:
        cmd_score(Path(args.dir), args.forms.split(","))


if __name__ == "__main__":
    main()
