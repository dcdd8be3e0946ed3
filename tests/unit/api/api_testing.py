"""Helpers for the api tests (a uniquely named module, importable from any test dir)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.loader import LoadResult, load_text

__all__ = ["Loader", "by_field", "load_snippet"]

Loader = Callable[[str], LoadResult]


def load_snippet(text: str) -> LoadResult:
    """Load a dedented YAML snippet as file ``test.yaml``."""
    return load_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")


def by_field(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic]) -> dict[str, Diagnostic]:
    return {d.field: d for d in diagnostics}
