"""Routes of every kind -> VirtualServices, their ``parents`` status and diagnostics.

Theory of operation: each route is resolved against its parents
(``attachment`` for Gateways, ``mesh`` for Services) and its rules are
converted once (``http``, ``grpc``, ``l4``). Gateway-bound HTTP and gRPC rules
are collected per (listener's Istio Gateway, hostname) and emitted, sorted by
precedence, as one VirtualService in the Gateway's namespace; TCP and TLS
rules give one VirtualService per route and listener. Mesh parents give
VirtualServices bound to ``mesh`` (``mesh.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.gateway_api.common import GROUP, ParentReference
from pilotfish.api.networking.virtual_service import (
    TCPRoute,
    TLSRoute,
    VirtualServiceSpec,
)
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.validation.findings import Findings
from pilotfish.translate.gateway_api.attachment import ParentResult, attach
from pilotfish.translate.gateway_api.backends import BackendProblem
from pilotfish.translate.gateway_api.derived import ROUTE_SEMANTICS, derived, safe_name
from pilotfish.translate.gateway_api.gateways import GatewayState
from pilotfish.translate.gateway_api.grpc import grpc_rule_entries
from pilotfish.translate.gateway_api.http import RuleEntry, http_rule_entries
from pilotfish.translate.gateway_api.index import ConfigIndex
from pilotfish.translate.gateway_api.l4 import l4_rules
from pilotfish.translate.gateway_api.mesh import MeshRoutes, attach_mesh
from pilotfish.translate.gateway_api.status import Condition, conditions

__all__ = ["ROUTE_KINDS", "RouteConversion", "convert_routes"]

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute")
_SEMANTICS = {ROUTE_SEMANTICS: "gateway"}


@dataclass
class RouteConversion:
    resources: list[Resource] = field(default_factory=list)
    statuses: dict[ResourceKey, Mapping[str, Any]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass
class _Buckets:
    """HTTP rules per (Istio Gateway, hostname), and the routes that gave them."""

    http: dict[tuple[str, str], list[tuple[RuleEntry, Resource]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def _parent_ref_status(ref: ParentReference, route: Resource) -> dict[str, Any]:
    out: dict[str, Any] = {
        "group": ref.group,
        "kind": ref.kind,
        "namespace": ref.namespace or route.namespace,
        "name": ref.name,
    }
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out


def _parent_status(
    result: ParentResult, route: Resource, problems: list[BackendProblem]
) -> dict[str, Any]:
    accepted = (
        Condition("Accepted", False, result.refusal, result.message)
        if result.refusal
        else Condition("Accepted", True, "Accepted")
    )
    if problems:
        first = problems[0]
        resolved = Condition("ResolvedRefs", False, first.reason, first.message)
    else:
        resolved = Condition("ResolvedRefs", True, "ResolvedRefs")
    return {
        "parentRef": _parent_ref_status(result.ref, route),
        "controllerName": result.controller,
        "conditions": conditions(route, [accepted, resolved]),
    }


def _rules_of(
    route: Resource, index: ConfigIndex
) -> tuple[list[RuleEntry], list[TCPRoute] | list[TLSRoute], list[BackendProblem]]:
    spec: Any = route.spec
    if route.kind == "HTTPRoute":
        entries, problems = http_rule_entries(route, spec.rules, index)
        return entries, [], problems
    if route.kind == "GRPCRoute":
        entries, problems = grpc_rule_entries(route, spec.rules, index)
        return entries, [], problems
    l4, problems = l4_rules(route, spec, index)
    return [], l4, problems


def _gateway_vs_l4(
    route: Resource,
    result: ParentResult,
    l4: list[TCPRoute] | list[TLSRoute],
) -> list[Resource]:
    out = []
    for att in result.attachments:
        gw_name = att.listener.istio_gateway
        if route.kind == "TCPRoute":
            spec = VirtualServiceSpec(hosts=["*"], gateways=[gw_name], tcp=list(l4))  # type: ignore[arg-type]
        else:
            spec = VirtualServiceSpec(hosts=list(att.hostnames), gateways=[gw_name], tls=list(l4))  # type: ignore[arg-type]
        name = safe_name(route.name, att.listener.gateway.name, att.listener.listener.name)
        out.append(
            derived(
                "VirtualService",
                "networking.istio.io/v1",
                route.namespace,
                name,
                spec,
                [route],
                _SEMANTICS,
            )
        )
    return out


def _finding(findings: Findings, path: str, message: str) -> None:
    findings.warning(path, message)


def convert_routes(
    resources: tuple[Resource, ...], states: list[GatewayState], index: ConfigIndex
) -> RouteConversion:
    """Every route's VirtualServices, status and diagnostics."""
    gateways = {(s.resource.namespace, s.resource.name): s for s in states}
    out = RouteConversion()
    buckets = _Buckets()
    mesh = MeshRoutes()
    for route in sorted((r for r in resources if r.kind in ROUTE_KINDS), key=lambda r: r.key):
        spec: Any = route.spec
        entries, l4, problems = _rules_of(route, index)
        hostnames = tuple(getattr(spec, "hostnames", ()))
        findings = Findings(route)
        parents: list[dict[str, Any]] = []
        bound: set[tuple[str, str]] = set()  # (Istio Gateway, hostname) this route fed
        for pi, ref in enumerate(spec.parent_refs):
            result: ParentResult | None
            if ref.group == GROUP and ref.kind == "Gateway":
                result = attach(ref, route.kind, route.namespace, hostnames, gateways, index)
            elif ref.group in ("", "core") and ref.kind == "Service":
                result = attach_mesh(ref, route, entries, index, mesh)
            else:
                result = ParentResult(
                    ref,
                    index.default_controller,
                    refusal="InvalidKind",
                    message=f"parentRef kind {ref.group}/{ref.kind} is not supported",
                )
            if result is None:
                continue
            parents.append(_parent_status(result, route, problems))
            if result.refusal:
                _finding(findings, f"spec.parentRefs[{pi}]", f"{result.refusal}: {result.message}")
            for att in result.attachments:
                for hostname in att.hostnames if entries else ():
                    where = (att.listener.istio_gateway, hostname)
                    if where not in bound:
                        bound.add(where)
                        buckets.http[where].extend((e, route) for e in entries)
            if l4 and result.attachments and ref.kind == "Gateway":
                out.resources.extend(_gateway_vs_l4(route, result, l4))
        if not parents:
            continue  # no parent of ours: another controller's route
        for problem in problems:
            _finding(findings, problem.field, f"{problem.reason}: {problem.message}")
        out.statuses[route.key] = {"parents": parents}
        out.diagnostics.extend(findings.items)
    out.resources.extend(_gateway_vs_http(buckets))
    out.resources.extend(mesh.virtual_services())
    return out


def _gateway_vs_http(buckets: _Buckets) -> list[Resource]:
    out = []
    for (gateway, hostname), items in sorted(buckets.http.items()):
        ordered = sorted(items, key=lambda item: item[0].key)
        sources = list({r.key: r for _, r in ordered}.values())
        spec = VirtualServiceSpec(
            hosts=[hostname], gateways=[gateway], http=[e.rule for e, _ in ordered]
        )
        gw_ns, _, gw_name = gateway.partition("/")
        name = safe_name(gw_name.removesuffix("-gwapi"), hostname)
        out.append(
            derived(
                "VirtualService", "networking.istio.io/v1", gw_ns, name, spec, sources, _SEMANTICS
            )
        )
    return out
