"""Where the workflow's demo rules write their inputs: the sheets name these paths before the files exist,
so the checks must know which missing files a rule will make."""

from __future__ import annotations

__all__ = ["demo_paths", "demo_outputs", "perturbseq_demo_path"]


def demo_paths(name: str) -> dict[str, str]:
    """Both layouts are written for every demo input; the sample sheet picks one."""
    return {
        "x_csv": f"resources/demo/{name}/X.csv",
        "y_csv": f"resources/demo/{name}/Y.csv",
        "coords_csv": f"resources/demo/{name}/coords.csv",
        "h5ad": f"resources/demo/{name}.h5ad",
    }


def demo_outputs(demo: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    """Path -> (demo name, spec) for every file rule simulate_demo makes."""
    out = {}
    for name, spec in demo.items():
        for path in demo_paths(name).values():
            out[path] = (name, spec)
    return out


def perturbseq_demo_path(name: str, suffix: str = ".h5ad") -> str:
    """Where the demo simulator writes screen ``name`` (``suffix`` ".gmt": its gene sets)."""
    return f"resources/demo/perturbseq/{name}{suffix}"
