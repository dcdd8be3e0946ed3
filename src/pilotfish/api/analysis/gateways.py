"""Gateway analyzers (Istio's ``analyzers/gateway``).

- IST0162 GatewayPortNotDefinedOnService: a server port that no Service
  selecting the Gateway's pods exposes (as port or targetPort). Only when some
  Service in the analyzed configuration selects those pods: the local
  runtime's built-in gateways have no Service object and listen on any
  Gateway port, so nothing is known to be missing there.
- IST0145 ConflictingGateways: two Gateways for the same workload (equal
  selectors, or selectors that pick a common pod) with servers on the same
  port, the same bind address and a host in common.
- IST0138 GatewayDuplicateCertificate: two Gateways for the same workload
  (the reported one's selector a subset of the other's) that serve the same certificate
  (same ``credentialName``, or the same certificate and key files): an HTTP/2
  client reusing its connection for the other's host gets 404s.
"""

from __future__ import annotations

from collections.abc import Mapping

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.gateway import GatewaySpec, Server, ServerTLSSettings
from pilotfish.api.resource import Resource
from pilotfish.api.validation.pod_index import matches

__all__ = ["CODES", "check_gateways"]

CODES = ("IST0138", "IST0145", "IST0162")


def check_gateways(ctx: AnalysisContext) -> list[Diagnostic]:
    gateways = ctx.of(GatewaySpec)
    found: list[Diagnostic] = []
    for r, spec in gateways:
        found += _ports_on_service(ctx, r, spec)
    found += _conflicts(ctx, gateways)
    found += _duplicate_certificates(gateways)
    return found


def _selector_text(selector: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def _ports_on_service(ctx: AnalysisContext, r: Resource, spec: GatewaySpec) -> list[Diagnostic]:
    pods = ctx.pods.selected(spec.selector, None) if spec.selector else []
    ports: set[int] = set()
    selecting = 0
    for svc, svc_spec in ctx.of(ServiceSpec):
        if not svc_spec.selector:
            continue
        if not any(
            p.namespace == svc.namespace and matches(svc_spec.selector, p.labels) for p in pods
        ):
            continue
        selecting += 1
        for port in svc_spec.ports:
            if port.protocol != "TCP":
                continue
            ports.add(port.port)
            if isinstance(port.target_port, int):
                ports.add(port.target_port)
    if not selecting:
        return []
    return [
        report(
            r,
            f"spec.servers[{i}].port.number",
            "IST0162",
            f"the gateway listens on port {server.port.number}, which no Service selecting "
            f"its pods ({_selector_text(spec.selector)}) exposes: traffic cannot reach it",
        )
        for i, server in enumerate(spec.servers)
        if server.port.number not in ports
    ]


def _same_workload(ctx: AnalysisContext, a: GatewaySpec, b: GatewaySpec) -> bool:
    if a.selector == b.selector:
        return True
    return any(
        matches(a.selector, p.labels) and matches(b.selector, p.labels) for p in ctx.pods.pods
    )


def _hosts_overlap(a: Server, b: Server) -> list[str]:
    if (a.bind or "") != (b.bind or ""):
        return []
    common: list[str] = []
    for host in a.hosts:
        name = host.partition("/")[2] or host
        for other in b.hosts:
            other_name = other.partition("/")[2] or other
            if name == other_name or "*" in (name, other_name):
                common.append(name)
                break
    return common


def _conflicts(
    ctx: AnalysisContext, gateways: list[tuple[Resource, GatewaySpec]]
) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for r, spec in gateways:
        for i, server in enumerate(spec.servers):
            others: set[str] = set()
            for other, other_spec in gateways:
                if other is r or not _same_workload(ctx, spec, other_spec):
                    continue
                if any(
                    s.port.number == server.port.number and _hosts_overlap(server, s)
                    for s in other_spec.servers
                ):
                    others.add(f"{other.namespace}/{other.name}")
            if others:
                found.append(
                    report(
                        r,
                        f"spec.servers[{i}]",
                        "IST0145",
                        f"conflicts with gateways {','.join(sorted(others))} (workload selector "
                        f"{_selector_text(spec.selector)}, port {server.port.number}, hosts "
                        f"{','.join(server.hosts)}): the same workload serves the same host "
                        "and port twice and only one definition wins",
                    )
                )
    return found


def _same_certificate(a: ServerTLSSettings, b: ServerTLSSettings) -> bool:
    if a.credential_name and b.credential_name:
        return a.credential_name == b.credential_name
    if a.credential_name or b.credential_name:
        return False
    return bool(
        a.server_certificate
        and a.private_key
        and a.server_certificate == b.server_certificate
        and a.private_key == b.private_key
    )


def _subset(x: Mapping[str, str], y: Mapping[str, str]) -> bool:
    return all(y.get(k) == v for k, v in x.items())


def _duplicate_certificates(gateways: list[tuple[Resource, GatewaySpec]]) -> list[Diagnostic]:
    """As Istio: a Gateway is reported when its selector is a subset of another's
    (so its workload includes the other's) and both serve the same certificate."""
    found: list[Diagnostic] = []
    for r, spec in gateways:
        others = sorted(
            f"{o.namespace}/{o.name}"
            for o, other_spec in gateways
            if o is not r
            and _subset(spec.selector, other_spec.selector)
            and any(
                x.tls is not None and y.tls is not None and _same_certificate(x.tls, y.tls)
                for x in spec.servers
                for y in other_spec.servers
            )
        )
        if others:
            found.append(
                report(
                    r,
                    "metadata.name",
                    "IST0138",
                    f"serves the same certificate as gateways {', '.join(others)} for the same "
                    "workload: an HTTP/2 client reusing a connection for the other's hosts "
                    "gets 404s",
                )
            )
    return found
