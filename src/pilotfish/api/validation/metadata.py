"""Checks of ``metadata`` shared by every kind (names, namespace, labels)."""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    f = Findings(resource)
    meta = resource.metadata
    if resource.kind != "Service":  # Services have the stricter DNS-label rule
        f.add("metadata.name", checks.check_dns1123_subdomain(meta.name, "name"))
    f.add("metadata.namespace", checks.check_dns1123_label(meta.namespace, "namespace"))
    for p, msg in checks.label_problems(meta.labels, "metadata.labels"):
        f.error(p, msg)
    return f.items
