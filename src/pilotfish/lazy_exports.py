"""Package names that import their module on first use (PEP 562).

A package whose ``__init__`` re-exports its modules' names makes every import
of any one of its modules load them all. For the packages the command line
and the agent touch (``store``, ``ca``) that was most of their start-up CPU.
A package lists ``name -> module`` and defines
``def __getattr__(name): return exports.load(name)``; ``TYPE_CHECKING``
imports keep the names' types for mypy.
"""

from __future__ import annotations

import importlib
import sys


class LazyExports:
    """The names of package ``package``, each loaded from its module on first use."""

    def __init__(self, package: str, homes: dict[str, str]) -> None:
        self._package = package
        self._homes = homes

    def load(self, name: str) -> object:
        home = self._homes.get(name)
        if home is None:
            raise AttributeError(f"module {self._package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[self._package], name, value)  # from now on a plain attribute
        return value
