"""config/README.md's table of settings states the schema's defaults: a user reading it gets what the run uses.

The table had drifted (session 34: `tune.selection` documented as `best` while the schema said `one_se`, `model.dtype`
as `float64` while `mixed`, the search box as [1e-3, 1] while [1e-4, 1]); this reads every row whose keys and
defaults are written as code spans and compares them with workflow/schemas/config.schema.yaml."""

from __future__ import annotations

import re

import yaml

from helpers import REPO

NONE = {"–", "-", "null", "`null`"}


def _schema_defaults() -> dict[str, object]:
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    out = {}

    def walk(node, prefix):
        for key, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict):
                if "default" in sub and not isinstance(sub["default"], dict):
                    out[prefix + key] = sub["default"]
                walk(sub, prefix + key + ".")

    walk(schema, "")
    return out


def _rows():
    """(keys, default cells) of the settings table's rows that name plain keys."""
    text = (REPO / "config" / "README.md").read_text()
    section = text.split("## `config/config.yaml`", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", cells[0])
        if keys and "<" not in cells[0]:
            yield keys, [c.strip() for c in cells[1].split(",")]


def _same(documented: str, default) -> bool:
    if default is None:
        return documented in NONE
    code = re.fullmatch(r"`([^`]*)`(?: \(.*\))?", documented)
    if code is None:
        return False
    value = code.group(1)
    if isinstance(default, bool):
        return value == str(default).lower()
    if isinstance(default, (int, float)):
        try:
            return float(value) == float(default)
        except ValueError:
            return False
    return value == str(default)


def test_every_documented_default_is_the_schemas():
    defaults = _schema_defaults()
    checked, wrong = 0, []
    for keys, cells in _rows():
        if len(keys) != len(cells):
            continue  # a row whose defaults are written in words (e.g. the search box)
        for key, cell in zip(keys, cells):
            if key not in defaults:
                continue
            checked += 1
            if not _same(cell, defaults[key]):
                wrong.append(f"{key}: README says {cell}, schema {defaults[key]!r}")
    assert not wrong, "config/README.md disagrees with the schema: " + "; ".join(wrong)
    assert checked >= 40, checked  # the table is read, not skipped


def test_every_setting_of_the_schema_is_documented():
    documented = {key for keys, _ in _rows() for key in keys}
    text = (REPO / "config" / "README.md").read_text()
    missing = [key for key in _schema_defaults() if key not in documented and f"`{key}`" not in text]
    assert not missing, f"settings without a row in config/README.md: {missing}"
