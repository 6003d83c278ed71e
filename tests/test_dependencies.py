"""Every third-party module the library and the rule scripts import is installed by ``pip install -e .`` — a declared
dependency or one of theirs — except the optional imports that are guarded with an install hint.

Why: the README's first command installs the package without extras, the test command with them, and CI runs only the
second. ``s3r.perturb_analysis`` imported statsmodels (a test extra) for its BH adjustment, so the demo's perturb-seq
job failed on a fresh install while every test passed (session 30). Checked from the installed metadata: the closure
of the base requirements (their own requirements, and those of the extras they name, recursively)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# imported inside a try that tells the user what to install (the Visium HD / Xenium parquet readers)
GUARDED = {"pyarrow"}


def imported_modules(folders) -> dict[str, set[str]]:
    """Top-level names of the absolute imports in every .py file under ``folders``: {module: files}."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def base_closure() -> set[str]:
    """The distributions ``pip install -e .`` brings: s3r's requirements without an extra marker, recursively, with
    the extras each requirement names (``snakemake[reports]``)."""
    def wanted(req: Requirement, extras: set[str]) -> bool:
        if req.marker is None:
            return True
        if "extra" in str(req.marker):
            return any(req.marker.evaluate({"extra": e}) for e in extras)
        return req.marker.evaluate()

    seen: dict[str, set[str]] = {}
    stack = [(canonicalize_name(r.name), set(r.extras)) for r in map(Requirement, md.requires("s3r") or []) if wanted(r, set())]
    while stack:
        name, extras = stack.pop()
        if name in seen and extras <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | extras
        try:
            requirements = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        stack += [(canonicalize_name(r.name), set(r.extras)) for r in map(Requirement, requirements) if wanted(r, extras)]
    return set(seen)


def test_the_library_imports_only_what_a_plain_install_brings():
    modules = imported_modules([ROOT / "src" / "s3r", ROOT / "scripts"])
    distributions = md.packages_distributions()
    closure = base_closure()
    assert {"torch", "numba", "snakemake", "scipy"} <= closure  # the closure is read, not empty
    missing = {}
    for module, files in modules.items():
        if module in sys.stdlib_module_names or module in {"s3r"} | GUARDED:
            continue
        dists = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if not dists & closure:
            missing[module] = sorted(files)
    assert not missing, f"imported but not installed by `pip install -e .` (declare in pyproject's dependencies): {missing}"
