"""Where configuration came from, and what is wrong with it.

Every error or warning the user sees names the file, the line, the resource
(kind, namespace/name), the field path and the reason, in one fixed format so
that editors and CI can parse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Diagnostic", "Severity", "SourceRef"]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """A position in a configuration file (1-based line; 0 when unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    # Nothing is wrong: Pilotfish says what it did with something (a foreign kind it ignored).
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in configuration.

    ``field`` is a dotted path in the user's own spelling, with list indexes in
    brackets: ``spec.http[0].route[1].destination.host``.
    """

    severity: Severity
    message: str
    source: SourceRef | None = None
    kind: str = ""
    namespace: str = ""
    name: str = ""
    field: str = ""
    # Istio's analyzer message code (``IST0118``) when Istio reports the same problem.
    code: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        """``file:line: Kind namespace/name: field: message`` (parts omitted when unknown)."""
        parts: list[str] = []
        if self.source is not None:
            parts.append(str(self.source))
        if self.kind:
            who = f"{self.namespace}/{self.name}" if self.namespace else self.name
            parts.append(f"{self.kind} {who}".rstrip())
        if self.field:
            parts.append(self.field)
        prefix = "" if self.severity is Severity.ERROR else f"{self.severity.value}: "
        suffix = f" ({self.code})" if self.code else ""
        parts.append(prefix + self.message + suffix)
        return ": ".join(parts)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "severity": self.severity.value,
            "file": self.source.file if self.source else "",
            "line": self.source.line if self.source else 0,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "field": self.field,
            "message": self.message,
        }
        if self.code:
            out["code"] = self.code
        return out
