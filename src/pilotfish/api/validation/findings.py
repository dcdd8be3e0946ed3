"""Collects the diagnostics of one resource, pointing at the line of each field."""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic, Severity, SourceRef
from pilotfish.api.resource import Resource

__all__ = ["Findings"]


class Findings:
    """``error`` / ``warning`` / ``info(path, msg)`` for one resource; ``items`` holds them.

    Paths are in the user's camelCase spelling (``spec.http[0].timeout``); the
    line is the field's own line, or its nearest parent's.
    """

    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.items: list[Diagnostic] = []

    def error(self, path: str, message: str) -> None:
        self._add(Severity.ERROR, path, message)

    def warning(self, path: str, message: str, code: str = "") -> None:
        self._add(Severity.WARNING, path, message, code)

    def info(self, path: str, message: str, code: str = "") -> None:
        self._add(Severity.INFO, path, message, code)

    def add(self, path: str, problem: str | None) -> None:
        """Record ``problem`` as an error when it is not None (for checker results)."""
        if problem is not None:
            self.error(path, problem)

    def _add(self, severity: Severity, path: str, message: str, code: str = "") -> None:
        r = self.resource
        file = r.source.file if r.source else ""
        self.items.append(
            Diagnostic(
                severity=severity,
                message=message,
                source=SourceRef(file, r.line_of(path)) if file else None,
                kind=r.kind,
                namespace=r.namespace,
                name=r.name,
                field=path,
                code=code,
            )
        )
