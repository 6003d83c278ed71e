"""Package namespaces whose names load on first use, so that reading a setting (``cv.PREDICTORS``) in a light job
(the workflow's suggest and tell) does not import torch through a sibling submodule."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, where: dict[str, tuple[str, ...]], namespace: dict):
    """``(__all__, __getattr__, __dir__)`` for ``package``, re-exporting the names of its submodules as ``where``
    lists them ({submodule: names}); each submodule is imported when one of its names is first read."""
    module_of = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str):
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(module_of))

    return sorted(name for name in module_of if not name.startswith("_")), __getattr__, __dir__
