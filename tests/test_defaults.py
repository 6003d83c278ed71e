"""One source for every default: the workflow schema, the CLI and docs/CONTRACT.md must agree with the library,
which owns the values (S3R.__init__, s3r.tune.DEFAULT_CONFIG, the constants of the modules that use them)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import yaml

from s3r import S3R, cv, tune
from s3r.glm.families import FAMILIES
from s3r.graph import GRAPH_METHODS
from s3r.solver import SMOOTH_MODES, solve_batch

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())["properties"]


def _defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not inspect.Parameter.empty}


def test_schema_model_defaults_are_the_estimators():
    library = _defaults(S3R.__init__)
    schema = SCHEMA["model"]["properties"]
    shared = [key for key in schema if key in library]
    assert len(shared) >= 12, shared
    assert {key: schema[key].get("default") for key in shared} == {key: library[key] for key in shared}
    graph = SCHEMA["graph"]["properties"]
    assert {"method": graph["method"]["default"], **{key: graph[key].get("default") for key in ("k", "radius", "max_edge_length")}} == {
        "method": library["graph"], **{key: library[key] for key in ("k", "radius", "max_edge_length")}}


def test_schema_choices_are_the_librarys():
    assert tuple(SCHEMA["model"]["properties"]["smooth"]["enum"]) == tuple(SMOOTH_MODES)
    assert tuple(SCHEMA["model"]["properties"]["family"]["enum"]) == tuple(FAMILIES)
    assert tuple(SCHEMA["graph"]["properties"]["method"]["enum"]) == tuple(GRAPH_METHODS)
    assert tuple(SCHEMA["tune"]["properties"]["fold_scheme"]["enum"]) == tuple(cv.FOLD_SCHEMES)
    assert tuple(SCHEMA["tune"]["properties"]["selection"]["enum"]) == tuple(tune.SELECTIONS)


def test_schema_tuning_defaults_are_the_tuners():
    schema = SCHEMA["tune"]["properties"]
    for key in ("n_trials", "rounds", "folds", "fold_scheme", "seed", "selection"):
        assert schema[key]["default"] == tune.DEFAULT_CONFIG[key], key
    solver = schema["solver"]["properties"]
    assert {key: solver[key]["default"] for key in solver} == {key: tune.DEFAULT_CONFIG["solver"][key] for key in solver}


def test_cli_fit_defaults_are_the_estimators():
    from s3r.cli import fit

    library = _defaults(S3R.__init__)
    assert fit.DEFAULTS == {key: library[key] for key in fit.DEFAULTS}
    import argparse

    parser = fit.add_parser(argparse.ArgumentParser().add_subparsers())
    given = {action.dest: action.default for action in parser._actions}
    assert (given["tol"], given["max_iter"], given["dtype"]) == (library["tol"], library["max_iter"], library["dtype"])


@pytest.mark.parametrize("name, function", [("S3R", S3R.__init__), ("solve_batch", solve_batch)])
def test_contract_signatures_quote_the_code(name, function):
    """docs/CONTRACT.md quotes tol and max_iter of these signatures; they must be the code's."""
    text = (REPO / "docs" / "CONTRACT.md").read_text()
    start = text.index(f"{name}(" if name == "S3R" else f"`{name}(")
    block = text[start:text.index(")", text.index("max_iter", start))]
    quoted = {key: float(re.search(rf"{key}=([0-9_.e-]+)", block).group(1).replace("_", "")) for key in ("tol", "max_iter")}
    code = _defaults(function)
    assert quoted == {key: float(code[key]) for key in ("tol", "max_iter")}
