"""The one tab-separated sheet reader behind both workflow sheets (spatial samples, perturb-seq screens).

Both sheets must stop the run before any job when a row is wrong and say which line, which column and what to
do; one reader keeps the rules (comments, blank lines, tabs only, unique safe names, names-or-file cells) and
the wording the same for both.
"""

from __future__ import annotations

import csv
import difflib
import os
import re
from pathlib import Path

from s3r.errors import S3RInputError

__all__ = ["Row", "read_sheet", "check_name", "names_or_file", "split_names", "suggest", "examples", "schema_error_message"]

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Row:
    """Error messages that point at one cell of a sheet: ``<sheet> line N (<kind> 'name'), column 'c': ...``."""

    def __init__(self, sheet: str, line: int, name: str | None, kind: str = "sample"):
        self.sheet, self.line, self.name, self.kind = sheet, line, name, kind

    def error(self, column: str | None, problem: str) -> S3RInputError:
        where = f"{self.sheet} line {self.line}"
        if self.name:
            where += f" ({self.kind} {self.name!r})"
        if column:
            where += f", column {column!r}"
        return S3RInputError(f"{where}: {problem}")


def suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def examples(items, k: int = 5) -> str:
    items = list(items)
    shown = ", ".join(repr(str(s)) for s in items[:k])
    return shown + (", ..." if len(items) > k else "")


def split_names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _looks_like_path(value: str) -> bool:
    return "/" in value or bool(re.search(r"\.(txt|tsv|csv|list)$", value))


def _is_file(value: str) -> bool:
    try:
        return Path(value).is_file()
    except OSError:  # a name too long for the file system is not a file
        return False


def names_or_file(row: Row, column: str, value: str) -> list[str]:
    """A comma-separated list, or a file with one name per line (blank lines and '#' comments skipped).

    A value with a comma is always a list: asking the file system about it would fail for long lists (hundreds of
    targets make a "file name" longer than the system allows)."""
    if "," not in value and _is_file(value):
        with open(value, encoding="utf-8") as fh:
            names = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
        if not names:
            raise row.error(column, f"file {value!r} lists no names; write one name per line")
        return names
    if _looks_like_path(value) and "," not in value:
        raise row.error(
            column, f"file {value!r} not found (relative to {os.getcwd()}); fix the path, or list names separated by commas"
        )
    return split_names(value)


def check_name(row: Row, name: str | None) -> None:
    """Row names become directory names and wildcards, so only a safe alphabet is allowed."""
    if not name or not SAFE_NAME.match(name):
        raise row.error("sample", "give a name of letters, digits, '_', '-' and '.' (it becomes a directory name)")


def read_sheet(path, columns: dict[str, str], required: tuple[str, ...], *, kind: str, missing: str,
               ) -> tuple[list[dict], list[int]]:
    """Rows of a tab-separated sheet as ``{column: str | None}`` with their file line numbers.

    ``columns`` are the known columns (name -> what it holds) and ``missing`` the fix to suggest when the
    file is absent. Comments (``#``) and blank lines are skipped; trailing empty cells may be dropped by an
    editor, extra non-empty cells are an error; every row needs a unique name in column ``sample``.
    """
    path = Path(path)
    sheet = str(path)
    if not path.is_file():
        raise S3RInputError(f"{kind} sheet {sheet!r} not found; {missing}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        numbered = [
            (i, row)
            for i, row in enumerate(csv.reader(fh, delimiter="\t"), start=1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
        ]
    if not numbered:
        raise S3RInputError(f"{sheet}: the {kind} sheet is empty; add a header line and one row per {kind}")
    header_line, header = numbered[0]
    header = [h.strip() for h in header]
    if len(header) == 1 and ("," in header[0] or " " in header[0]):
        raise S3RInputError(
            f"{sheet} line {header_line}: the header has a single column {header[0]!r}; "
            f"separate the columns with tabs, not commas or spaces"
        )
    for j, col in enumerate(header):
        if col not in columns:
            raise S3RInputError(
                f"{sheet} line {header_line}, column {j + 1}: unknown column {col!r}{suggest(col, columns)}; "
                f"known columns are {', '.join(columns)}"
            )
        if header.index(col) != j:
            raise S3RInputError(f"{sheet} line {header_line}: column {col!r} appears twice; keep one")
    for col in required:
        if col not in header:
            raise S3RInputError(f"{sheet} line {header_line}: the header lacks column {col!r}; add it ({columns[col]})")
    records, lines = [], []
    for line, row in numbered[1:]:
        cells = [c.strip() for c in row]
        if len(cells) > len(header) and any(cells[len(header):]):
            raise S3RInputError(
                f"{sheet} line {line}: {len(cells)} tab-separated fields but the header has {len(header)}; "
                f"remove the extra fields or name them in the header"
            )
        cells = (cells + [""] * len(header))[: len(header)]
        records.append({col: (value if value != "" else None) for col, value in zip(header, cells)})
        lines.append(line)
    if not records:
        raise S3RInputError(f"{sheet}: the {kind} sheet has a header but no {kind}s; add one row per {kind}")
    seen: dict[str, int] = {}
    for record, line in zip(records, lines):
        name = record.get("sample")
        if name is None:
            raise Row(sheet, line, None, kind).error("sample", f"no {kind} name; give every row a unique name")
        if name in seen:
            raise Row(sheet, line, name, kind).error(
                "sample", f"duplicate {kind} name (also on line {seen[name]}); give every row a unique name"
            )
        seen[name] = line
    return records, lines


def schema_error_message(error: BaseException, *, source: str, lines: list[int] | None = None, frame=None) -> str:
    """One line from a JSON-schema failure: where, the offending value, what the schema wants.

    ``error`` is the ``jsonschema.ValidationError`` (Snakemake's ``validate`` raises a WorkflowError whose
    ``__context__`` holds it). For a sample sheet, the row index is recovered from the WorkflowError text.
    """
    import jsonschema

    cause = error
    while cause is not None and not isinstance(cause, jsonschema.ValidationError):
        cause = cause.__context__ or cause.__cause__
    if cause is None:
        return f"{source}: {str(error).strip().splitlines()[0]}"
    path = [str(p) for p in cause.absolute_path]
    hint = cause.schema.get("description") if isinstance(cause.schema, dict) else None
    if cause.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)' was unexpected", cause.message)
        parent = cause.schema.get("properties", {}) if isinstance(cause.schema, dict) else {}
        key = extra[0] if extra else "?"
        where = ".".join(path + [key])
        return (
            f"{source}: unknown setting {where!r}{suggest(key, parent)}; remove it or fix its spelling "
            f"(known: {', '.join(parent) or 'none'})"
        )
    problem = cause.message
    fix = f"expected: {hint}" if hint else "see workflow/schemas for the allowed values"
    if lines is not None and frame is not None:
        match = re.search(r"row (\d+)", str(error))
        i = int(match.group(1)) if match else 0
        row = Row(source, lines[i], frame.iloc[i].get("sample"))
        return str(row.error(path[0] if path else None, f"{problem}; {fix}"))
    where = ".".join(path) if path else "(top level)"
    return f"{source}: setting {where!r}: {problem}; {fix}"
