"""Pieces of the readers' one-line error messages: a few examples of a list, close matches to a misspelt name."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def _examples(items: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(repr(str(s)) for s in list(items)[:k])
    return f"{shown}, ..." if len(items) > k else shown


def _suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {_examples(close)}?)" if close else ""
