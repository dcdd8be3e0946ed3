"""Telemetry provider names against the mesh config's ``extensionProviders``.

A Telemetry names providers (``zipkin``, ``otel``...) that only the mesh config
defines, so this check needs the mesh config and runs where it is known
(``pilotfish analyze --mesh-config``). Built-in names (``envoy``,
``prometheus``, ``zipkin``) need no definition.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.telemetry.telemetry import ProviderRef, TelemetrySpec
from pilotfish.api.validation.findings import Findings
from pilotfish.model.mesh_config import MeshConfig
from pilotfish.model.mesh_telemetry import BUILTIN_PROVIDERS

__all__ = ["check_telemetry_providers"]


def check_telemetry_providers(resources: Iterable[Resource], mesh: MeshConfig) -> list[Diagnostic]:
    """An error for each provider name no extension provider defines."""
    known = {p.name for p in mesh.extension_providers} | BUILTIN_PROVIDERS
    found: list[Diagnostic] = []
    for r in resources:
        spec = r.spec
        if not isinstance(spec, TelemetrySpec):
            continue
        f = Findings(r)
        sections: list[tuple[str, list[list[ProviderRef]]]] = [
            ("tracing", [e.providers for e in spec.tracing]),
            ("metrics", [e.providers for e in spec.metrics]),
            ("accessLogging", [e.providers for e in spec.access_logging]),
        ]
        for name, entries in sections:
            for i, providers in enumerate(entries):
                for j, provider in enumerate(providers):
                    if provider.name not in known:
                        f.error(
                            f"spec.{name}[{i}].providers[{j}].name",
                            f"unknown provider {provider.name!r}: not in the mesh "
                            "config's extensionProviders",
                        )
        found += f.items
    return found
