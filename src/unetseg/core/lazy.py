"""Package roots that load their members on first use: the command line imports a package's light records
(options, limits) without the heavy modules beside them (torch, FastAPI, Lightning)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy(package: str, homes: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``<package>.<homes[name]>`` when ``name`` is first
    asked for (PEP 562)."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{homes[name]}"), name)

    return __getattr__
