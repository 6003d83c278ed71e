"""The import rules of docs/architecture.md, checked on the source: no import cycle at module level, the solver
imports no I/O, report, tuning, CV or GLM-family module, and the library imports neither the command line nor
the workflow package. A new violation fails here; the known ones are listed, to be paid off."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# (importer, imported) pairs that break a rule today; remove an entry when the import goes
KNOWN = {("s3r.solver.glm_batch", "s3r.glm.families")}


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


# -- size: no module over 450 lines, no function over 80 (issue 16) ---------------------------------------
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80

# The solver loops stay whole: each is one iteration whose steps share a dozen buffers and step sizes, and
# cutting it into functions would pass those around on every iteration of the hottest code in the package.
LOOPS = {
    "solver/primal_dual.py::primal_dual",
    "solver/working_set.py::solve_working_set",
    "solver/batch.py::solve_batch",
    "deconv/condat_vu.py::condat_vu",
}

def _sizes() -> tuple[dict[str, int], dict[str, int]]:
    """(lines per module, lines per function as 'module::name') over src/s3r, paths relative to it."""
    modules, functions = {}, {}
    for f in sorted((SRC / "s3r").rglob("*.py")):
        rel = f.relative_to(SRC / "s3r").as_posix()
        text = f.read_text(encoding="utf-8")
        modules[rel] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[f"{rel}::{node.name}"] = max(functions.get(f"{rel}::{node.name}", 0), node.end_lineno - node.lineno + 1)
    return modules, functions


def test_no_module_over_450_lines():
    modules, _ = _sizes()
    long = {m: n for m, n in modules.items() if n > MAX_MODULE_LINES}
    assert long == {}, f"split these modules by responsibility: {long}"


def test_no_function_over_80_lines_outside_the_solver_loops():
    _, functions = _sizes()
    long = {f: n for f, n in functions.items()
            if n > MAX_FUNCTION_LINES and f not in LOOPS}
    assert long == {}, f"extract well-named steps from: {long}"


def test_size_exemptions_are_not_stale():
    """An exempt loop that is gone or now short enough is a stale entry: remove it."""
    _, functions = _sizes()
    assert {f for f in LOOPS if functions.get(f, 0) <= MAX_FUNCTION_LINES} == set()


def test_the_workflow_suggest_and_tell_jobs_do_not_import_torch():
    """The light tuning jobs (suggest, tell, select) read settings through the lazy ``s3r.cv`` / ``s3r.tune``
    namespaces; importing torch there costs ~5 s CPU per job, ~20 % of the demo's summed job time (measured)."""
    import subprocess
    import sys

    code = ("import sys\nfrom s3r.workflow.tuning import tune\nfrom s3r import cv\n"
            "tune.suggest, tune.tell, tune.select, tune.resolve_config, cv.PREDICTORS, cv.FOLD_SCHEMES\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"these imports pulled in torch: {out}"
