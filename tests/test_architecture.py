"""The import rules of docs/architecture.md, checked on the source: no import cycle at module level, the solver
imports no I/O, report, tuning, CV or GLM-family module, and the library imports neither the command line nor
the workflow package. A new violation fails here; the known ones are listed, to be paid off."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# (importer, imported) pairs that break a rule today; remove an entry when the import goes
KNOWN = {("s3r.solver.smooth_datafit_pd", "s3r.glm.families")}


def _modules() -> dict[str, tuple[set[str], set[str]]]:
    """Module -> (s3r modules imported at module level, s3r modules imported anywhere)."""
    out = {}
    files = sorted((SRC / "s3r").rglob("*.py"))
    names = set()
    for f in files:
        parts = f.relative_to(SRC).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    for f in files:
        parts = f.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(f.read_text(encoding="utf-8"))
        top, every = set(), set()
        for node in ast.walk(tree):
            found = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("s3r"):
                found = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name.startswith("s3r")]
            found = {m for m in found if m in names and m != name}
            every |= found
            if node in tree.body:
                top |= found
        out[name] = (top, every)
    return out


def _violations(rule) -> list[tuple[str, str]]:
    return sorted((m, d) for m, (_, every) in _modules().items() for d in every if rule(m, d) and (m, d) not in KNOWN)


def test_no_import_cycle_at_module_level():
    graph = {m: top for m, (top, _) in _modules().items()}
    # a package imports its own submodules (s3r.solver -> s3r.solver.batch); a submodule importing the
    # package back is the usual re-export, not a cycle through other code
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in graph.get(m, ()):
            if d == m.rsplit(".", 1)[0] or m.startswith(d + "."):
                continue
            if state.get(d) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path + [d])}")
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_solver_imports_no_io_report_cv_or_glm_family():
    banned = ("s3r.io", "s3r.artifacts", "s3r.results", "s3r.report", "s3r.cv", "s3r.tune", "s3r.glm", "s3r.workflow", "s3r.cli")
    assert _violations(lambda m, d: m.startswith("s3r.solver") and d.startswith(banned)) == []


def test_library_imports_no_front_end():
    def front_end(m, d):
        if d.startswith("s3r.cli") and not (m.startswith("s3r.cli") or m == "s3r.__main__"):
            return True
        return d.startswith("s3r.workflow") and not m.startswith("s3r.workflow")

    assert _violations(front_end) == []
