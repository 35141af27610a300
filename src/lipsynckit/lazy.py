"""Package attributes imported on first use (PEP 562), so that ``import lipsynckit`` and the CLI's help
need no torch: ``__getattr__ = lazy_getattr(__name__, globals(), {"name": "module", ...})``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, namespace: dict[str, Any], where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``where[name]`` (absolute, or relative to ``package`` when
    it starts with a dot) on first use and keeps the value in ``namespace`` for later look-ups."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    return __getattr__
