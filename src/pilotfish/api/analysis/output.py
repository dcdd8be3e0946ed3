"""istioctl's ways of filtering and printing analysis findings.

- Levels: Info < Warning < Error. A finding with an Istio code takes the
  level of Istio's catalogue (``with_catalogue_levels``); Pilotfish's own
  findings keep theirs.
- ``--suppress CODE=RESOURCE``: ``RESOURCE`` is matched against the finding's
  object as istioctl names it, ``Kind namespace/name`` (cluster-scoped:
  ``Kind name``), and, as istioctl's own examples spell it,
  ``Kind name.namespace``; ``*`` matches any run of characters.
- ``-o log``: one line per finding, ``Error [IST0101] (VirtualService
  default/x file.yaml:12) message``; ``-o json|yaml``: a list of
  ``{code, level, origin, reference, documentationUrl, message}`` as istioctl
  prints them, plus Pilotfish's ``field`` (the dotted path) when known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import yaml

from pilotfish.api.analysis.messages import by_code, documentation_url
from pilotfish.api.diagnostics import Diagnostic, Severity

__all__ = [
    "LEVELS",
    "WORKLOAD_DEPENDENT_CODES",
    "Suppression",
    "at_least",
    "format_findings",
    "level_name",
    "parse_level",
    "parse_suppression",
    "suppressed",
    "with_catalogue_levels",
]

#: Level names as istioctl spells them, lowest first.
LEVELS = ("Info", "Warning", "Error")
_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}
_BY_NAME = {"info": Severity.INFO, "warning": Severity.WARNING, "error": Severity.ERROR}

#: Error-level codes about which workloads run rather than about the configuration
#: being consistent; ``pilotfish apply`` reports them without refusing.
WORKLOAD_DEPENDENT_CODES = frozenset({"IST0173"})

#: Sources that are not files (objects read from the control plane): no reference.
LIVE_SOURCE = "<control-plane>"


def parse_level(text: str) -> Severity:
    """``Info``, ``Warning`` or ``Error`` (any case); ValueError otherwise."""
    try:
        return _BY_NAME[text.lower()]
    except KeyError:
        raise ValueError(f"{text!r} is not a level: one of {', '.join(LEVELS)}") from None


def level_name(severity: Severity) -> str:
    return severity.value.capitalize()


def at_least(diagnostic: Diagnostic, level: Severity) -> bool:
    return _RANK[diagnostic.severity] >= _RANK[level]


def with_catalogue_levels(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Findings with an Istio code at the level Istio gives that code."""
    out: list[Diagnostic] = []
    for d in diagnostics:
        message = by_code(d.code) if d.code else None
        out.append(replace(d, severity=message.level) if message is not None else d)
    return out


@dataclass(frozen=True, slots=True)
class Suppression:
    code: str
    resource: str  # a glob: ``*`` matches anything

    def matches(self, diagnostic: Diagnostic) -> bool:
        if diagnostic.code != self.code or not diagnostic.kind:
            return False
        pattern = re.compile(
            "".join(
                ".*" if part == "*" else re.escape(part)
                for part in re.split(r"(\*)", self.resource)
            )
        )
        return any(pattern.fullmatch(name) for name in _names(diagnostic))


def parse_suppression(text: str) -> Suppression:
    """``CODE=RESOURCE``; ValueError when it is not of that form."""
    code, sep, resource = text.partition("=")
    if not sep or not code or not resource or "=" in resource:
        raise ValueError(
            f"{text!r} is not a valid suppression: use CODE=RESOURCE, "
            "e.g. 'IST0102=Namespace default' or 'IST0101=VirtualService default/*'"
        )
    return Suppression(code.strip(), resource.strip())


def suppressed(diagnostic: Diagnostic, suppressions: Sequence[Suppression]) -> bool:
    return any(s.matches(diagnostic) for s in suppressions)


def _names(d: Diagnostic) -> list[str]:
    if not d.namespace:
        return [f"{d.kind} {d.name}"]
    return [f"{d.kind} {d.namespace}/{d.name}", f"{d.kind} {d.name}.{d.namespace}"]


def _origin(d: Diagnostic) -> str:
    if not d.kind:
        return ""
    return f"{d.kind} {d.namespace}/{d.name}" if d.namespace else f"{d.kind} {d.name}"


def _reference(d: Diagnostic) -> str:
    if d.source is None or d.source.file == LIVE_SOURCE:
        return ""
    return str(d.source)


def _log_line(d: Diagnostic) -> str:
    code = f" [{d.code}]" if d.code else ""
    where = " ".join(part for part in (_origin(d), _reference(d)) if part)
    origin = f" ({where})" if where else ""
    text = f"{d.field}: {d.message}" if d.field else d.message
    return f"{level_name(d.severity)}{code}{origin} {text}"


def _structured(d: Diagnostic) -> dict[str, Any]:
    out: dict[str, Any] = {"code": d.code, "level": level_name(d.severity)}
    if d.kind:
        out["origin"] = _origin(d)
    reference = _reference(d)
    if reference:
        out["reference"] = reference
    out["message"] = d.message
    if d.code:
        out["documentationUrl"] = documentation_url(d.code)
    if d.field:
        out["field"] = d.field
    return out


def format_findings(diagnostics: Sequence[Diagnostic], output: str) -> str:
    """The findings as ``log`` lines, or a ``json`` / ``yaml`` list (no trailing newline)."""
    if output == "log":
        return "\n".join(_log_line(d) for d in diagnostics)
    items = [_structured(d) for d in diagnostics]
    if output == "json":
        return json.dumps(items, indent=2)
    if output == "yaml":
        text: str = yaml.safe_dump(items, sort_keys=False, allow_unicode=True)
        return text.rstrip("\n") if items else "[]"
    raise ValueError(f"unknown output format {output!r}")
