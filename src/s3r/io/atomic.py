"""Atomic writers (temporary file in the same directory, fsync, ``os.replace``) and the JSON object reader."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from s3r.errors import S3RInputError

if TYPE_CHECKING:  # pandas is imported by whoever builds a DataFrame: a solve job writing JSON and arrays skips its 0.2 s
    import pandas as pd


def _umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for writers that need a file name (h5py, savefig).

    The file is moved onto ``path`` only when the block succeeds; otherwise it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the suffix: some writers choose the format from it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs should look like ordinary files
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", *, encoding: str = "utf-8", newline: str | None = None
) -> Iterator[Any]:
    """Open ``path`` for writing so that readers see either the old file or the complete new one."""
    if mode not in ("w", "wt", "wb"):
        raise ValueError(f"atomic_write mode must be 'w', 'wt' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        if "b" in mode:
            fh = open(tmp, "wb")
        else:
            fh = open(tmp, "w", encoding=encoding, newline=newline)
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else str(_jsonable(k))): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no NaN/inf; other tools (jq, JS) reject them
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically; numpy values become plain JSON, NaN/inf become null, key order is kept."""
    text = json.dumps(_jsonable(obj), indent=2, allow_nan=False)
    with atomic_write(path, "w") as fh:
        fh.write(text + "\n")


def read_json_object(path: str | os.PathLike, missing: str, expected: str) -> dict:
    """A JSON object from a file, or one line naming the file: ``missing`` says what to pass instead when it
    does not exist, ``expected`` what the object should hold."""
    path = Path(path)
    if not path.is_file():
        raise S3RInputError(f"{path}: {missing}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise S3RInputError(f"{path}: not valid JSON (line {err.lineno}): {err.msg}") from None
    if not isinstance(raw, dict):
        raise S3RInputError(f"{path}: expected a JSON object {expected}")
    return raw


def write_csv(df: pd.DataFrame, path: str | os.PathLike, **to_csv_kwargs: Any) -> None:
    """Write a DataFrame as CSV atomically (floats in shortest round-trip form unless told otherwise)."""
    with atomic_write(path, "w", newline="") as fh:
        df.to_csv(fh, **to_csv_kwargs)


def write_npz(path: str | os.PathLike, *, compresslevel: int | None = None, **arrays: Any) -> None:
    """Write arrays with ``np.savez_compressed`` atomically; ``compresslevel`` (1–9) sets deflate's level where speed
    matters more than size (numpy's own is zlib's default, 6), 0 stores the arrays as they are (for data that is
    already compact, where deflate costs time and saves little)."""
    with atomic_write(path, "wb") as fh:
        if compresslevel is None:
            np.savez_compressed(fh, **arrays)
            return
        method = zipfile.ZIP_STORED if compresslevel == 0 else zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(fh, "w", compression=method, compresslevel=compresslevel or None, allowZip64=True) as zf:
            for name, value in arrays.items():  # the layout np.load reads: one NAME.npy member per array
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
