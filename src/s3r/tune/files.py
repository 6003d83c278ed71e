"""The round files a tuning leaves: JSON records, the fold-state files later rounds warm-start from, the TSV tables."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3r.errors import S3RInputError
from s3r.io import write_csv, write_npz
from s3r.tune.space import _log_params


def round_dir(out_dir, r: int) -> Path:
    return Path(out_dir) / f"round_{r}"


def read_json(path) -> dict:
    """A tuning file as a dict, or one line naming the file and what to rerun."""
    path = Path(path)
    if not path.is_file():
        raise S3RInputError(f"{path}: tuning file not found; run the step that writes it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise S3RInputError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}; delete it and rerun that step") from None


def _load_results(results: Sequence) -> list[dict]:
    """Every recorded trial from results.json files (or already-loaded dicts), sorted by trial number."""
    trials = []
    for item in results:
        doc = item if isinstance(item, dict) else read_json(item)
        trials.extend(doc["trials"])
    trials.sort(key=lambda t: t["number"])
    numbers = [t["number"] for t in trials]
    if numbers != list(range(len(numbers))):
        raise S3RInputError(f"tuning results do not hold trials 0..{len(numbers) - 1} exactly once (got {numbers[:10]}...); pass every earlier round's results.json")
    return trials


_NPZ_LOCK = threading.Lock()


def read_fold_state(path, prefix: str = "") -> dict:
    """The numeric arrays of a fold state file (those whose key starts with ``prefix``, prefix removed)."""
    return read_fold_states(path, [prefix])[prefix]


def read_fold_states(path, prefixes: Sequence[str]) -> dict[str, dict]:
    """{prefix: :func:`read_fold_state`} for several targets' states of one chunk file, the file opened once (its
    directory of ~400 members took 5 ms to parse, for each of a chunk's 67 targets in every job that read it)."""
    # one reader at a time: numpy parses .npy headers with ast.literal_eval, and CPython 3.11's parser is not
    # thread-safe ("AST constructor recursion depth mismatch", seen when run_search reads folds in threads)
    # each array is read once (indexing the NpzFile reads its member again at every access)
    with _NPZ_LOCK, np.load(path) as z:  # allow_pickle stays off: states hold numeric arrays only
        arrays = {prefix: {key[len(prefix):]: z[key] for key in z.files if key.startswith(prefix)} for prefix in prefixes}
    return {prefix: _unpack_maps({key: value for key, value in got.items() if value.dtype != object}) for prefix, got in arrays.items()}


# deflate's level for the fold states: numpy's 6 was 7 of a 67-target fold job's 107 CPU-s, level 1 2.5 of a round-1
# job's 52 (benchmarks/README.md, sessions 27–28); the maps are packed (pack_maps), as small as deflated, and stored
STATE_LEVEL = 0


def write_fold_states(path, states: dict[str, dict]) -> None:
    """One fold-state file (the layout :func:`read_fold_states` reads) from {prefix: state dict}: a chunk's targets
    under ``t<i>.``, a single tuning's or one target's copy under ""."""
    write_npz(path, compresslevel=STATE_LEVEL,
              **{f"{prefix}{key}": value for prefix, state in states.items() for key, value in pack_maps(state).items()})


def pack_maps(state: dict) -> dict:
    """A fold state with its maps W (n, B, p) kept as their non-zero entries and a bit per entry saying where.

    Why: a round's W holds ~half zeros (unselected features, zeroed parts of maps); deflating the whole array at level
    1 was 2.5 of a 52 CPU-s fold job and still wrote 60 % of the bytes. This form is lossless (−0.0 reads back as 0.0),
    about as small, and costs a mask, a bit-pack and a gather (benchmarks/README.md, session 28)."""
    W = state.get("W")
    if W is None:
        return state
    W = np.asarray(W)
    nonzero = W != 0
    out = {key: value for key, value in state.items() if key != "W"}
    out.update(W_shape=np.asarray(W.shape, dtype=np.int64), W_nonzero=np.packbits(nonzero, axis=None), W_values=W[nonzero])
    return out


def _unpack_maps(arrays: dict) -> dict:
    """:func:`pack_maps` undone (a state written whole passes as it is)."""
    if "W_values" not in arrays:
        return arrays
    shape = tuple(int(v) for v in arrays.pop("W_shape"))
    nonzero = np.unpackbits(arrays.pop("W_nonzero"), count=int(np.prod(shape))).view(bool).reshape(shape)
    values = arrays.pop("W_values")
    W = np.zeros(shape, dtype=values.dtype)
    W[nonzero] = values
    arrays["W"] = W
    return arrays


def _nearest_warm_start(params: list[dict], stores: Sequence[dict], config: dict) -> tuple[dict, list]:
    """Per trial, the earlier solution on this fold nearest in the search's own scale (ties: lowest number);
    ``stores``: the state dicts this fold wrote in earlier rounds (:func:`read_fold_state`)."""
    numbers = np.concatenate([s["numbers"] for s in stores])
    points = np.concatenate([s["log_params"] for s in stores])
    order = np.argsort(numbers, kind="stable")
    target = _log_params(params, config)
    dist = ((target[:, None, :] - points[None, order, :]) ** 2).sum(-1)
    pick = order[np.argmin(dist, axis=1)]  # argmin takes the first (lowest number) on ties

    def gather(key, axis):
        if any(key not in s for s in stores):
            return None
        return np.take(np.concatenate([s[key] for s in stores], axis=axis), pick, axis=axis)

    warm = {"W": gather("W", 1), "data_dual": gather("data_dual", 1), "step": gather("step", 0), "gamma": gather("gamma", 0)}
    return warm, [int(numbers[i]) for i in pick]


def chosen_start(target_dir, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """The mean of the chosen trial's fold solutions that ``s3r.workflow.tuning.select_chunk`` kept beside a target's
    best_params.json (None without tuning): the final fit's start. On DLPFC targets it cut the final fit's iterations
    6,530 → 2,000 and 8,760 → 5,870 (benchmarks/README.md, session 16). None, too, where they are not of ``shape``
    (:func:`start_shape`): a search on a window of a large section (:mod:`s3r.tune.window`) holds the window's."""
    maps = []
    for path in sorted(Path(target_dir).glob("round_*/fold_*.npz")):
        W = read_fold_state(path).get("W")
        if W is not None and W.ndim == 3 and W.shape[1] == 1:
            maps.append(W[:, 0, :].astype(np.float64))
    return np.mean(maps, axis=0) if maps and (shape is None or maps[0].shape == tuple(shape)) else None


def start_shape(model, n_spots: int, n_features: int) -> tuple[int, int]:
    """(spots, columns) of the final fit's start for ``model``: a column more with a spatial intercept."""
    return int(n_spots), int(n_features) + int(bool(model.spatial_intercept))


def write_tables(results: Sequence, out_dir) -> tuple[Path, Path]:
    """trials.tsv (one row per trial) and fold_scores.tsv (one row per trial and fold)."""
    trials = _load_results(results)
    out_dir = Path(out_dir)
    rows, fold_rows = [], []
    for t in trials:
        rows.append({
            "number": t["number"], "round": t["round"], **t["params"], **{f"{k}_search": v for k, v in (t.get("search") or {}).items()},
            "state": t["state"], "cv_loss": t["value"],
            "cv_std": t["std"], "cv_se": t["se"], "all_converged": all(t["converged"]), "max_iterations": max(t["iterations"]),
            "map_pieces": t.get("pieces"), "map_features": t.get("features"),
        })
        for fold, loss, conv, its in zip(range(len(t["fold_losses"])), t["fold_losses"], t["converged"], t["iterations"]):
            fold_rows.append({"number": t["number"], "fold": fold, "loss": loss, "converged": conv, "iterations": its})
    import pandas as pd

    write_csv(pd.DataFrame(rows), out_dir / "trials.tsv", sep="\t", index=False)
    write_csv(pd.DataFrame(fold_rows), out_dir / "fold_scores.tsv", sep="\t", index=False)
    return out_dir / "trials.tsv", out_dir / "fold_scores.tsv"
