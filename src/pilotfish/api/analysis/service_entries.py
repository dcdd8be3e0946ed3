"""ServiceEntry analyzers (Istio's ``analyzers/serviceentry``).

- IST0134 ServiceEntryAddressesRequired: a ServiceEntry without
  ``addresses`` with a TCP port (or a port without protocol). Sidecars then
  listen for it on ``0.0.0.0:<port>`` and catch every destination on that
  port. Not reported when the mesh config turns on DNS address
  auto-allocation (``defaultConfig.proxyMetadata``: ``ISTIO_META_DNS_CAPTURE``
  with ``ISTIO_META_DNS_AUTO_ALLOCATE`` or ``PILOT_ENABLE_IP_AUTOALLOCATE``), as
  Istio does.
- IST0177 ConflictingServiceEntryProtocol: ServiceEntries visible in one
  namespace (``exportTo``) that give the same host and port different
  protocols; each is reported once.
"""

from __future__ import annotations

from collections import defaultdict

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.service_entry import ServiceEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.model.mesh_config import MeshConfig

__all__ = ["CODES", "check_service_entries"]

CODES = ("IST0134", "IST0177")

_ALL = "*"


def check_service_entries(ctx: AnalysisContext) -> list[Diagnostic]:
    entries = ctx.of(ServiceEntrySpec)
    found: list[Diagnostic] = []
    if not _auto_allocated(ctx.mesh):
        for r, spec in entries:
            found += _addresses_required(r, spec)
    found += _conflicting_protocols(entries)
    return found


def _auto_allocated(mesh: MeshConfig | None) -> bool:
    if mesh is None or mesh.default_config is None:
        return False
    metadata = (mesh.default_config.model_extra or {}).get("proxyMetadata") or {}
    if not isinstance(metadata, dict) or metadata.get("ISTIO_META_DNS_CAPTURE") != "true":
        return False
    return any(
        metadata.get(k) == "true"
        for k in ("ISTIO_META_DNS_AUTO_ALLOCATE", "PILOT_ENABLE_IP_AUTOALLOCATE")
    )


def _addresses_required(r: Resource, spec: ServiceEntrySpec) -> list[Diagnostic]:
    if spec.addresses:
        return []
    return [
        report(
            r,
            f"spec.ports[{i}]",
            "IST0134",
            f"port {port.number} is TCP and the ServiceEntry has no addresses: sidecars "
            f"listen on 0.0.0.0:{port.number} for it and catch every destination on that port",
        )
        for i, port in enumerate(spec.ports)
        if not port.protocol or port.protocol.upper() == "TCP"
    ]


def _scopes(r: Resource, spec: ServiceEntrySpec) -> set[str]:
    if not spec.export_to or _ALL in spec.export_to:
        return {_ALL}
    return {r.namespace if e == "." else e for e in spec.export_to}


def _conflicting_protocols(entries: list[tuple[Resource, ServiceEntrySpec]]) -> list[Diagnostic]:
    index: dict[tuple[str, str, int], list[tuple[str, Resource]]] = defaultdict(list)
    for r, spec in entries:
        for scope in _scopes(r, spec):
            for host in spec.hosts:
                for port in spec.ports:
                    index[(scope, host, port.number)].append(((port.protocol or "").upper(), r))
    found: list[Diagnostic] = []
    reported: set[tuple[str, str]] = set()
    for (scope, host, number), seen in sorted(index.items(), key=lambda kv: kv[0]):
        if scope != _ALL:
            seen = seen + index.get((_ALL, host, number), [])
        protocols = sorted({p for p, _ in seen})
        if len(protocols) < 2:
            continue
        names = ", ".join(sorted({f"{r.namespace}/{r.name}" for _, r in seen}))
        for _, r in seen:
            if (r.namespace, r.name) in reported:
                continue
            reported.add((r.namespace, r.name))
            found.append(
                report(
                    r,
                    "metadata.name",
                    "IST0177",
                    f"ServiceEntries {names} give host {host!r} port {number} different "
                    f"protocols ({', '.join(p or '(none)' for p in protocols)}): one of them "
                    "is ignored",
                )
            )
    return found
