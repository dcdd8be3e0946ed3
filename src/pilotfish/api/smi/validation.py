"""Semantic checks of the SMI kinds: what the SMI specifications require and
what Pilotfish needs to serve them (regexes RE2 can compile, known kinds)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.smi.types import (
    HTTPRouteGroupSpec,
    IdentityBinding,
    SMITCPRouteSpec,
    TrafficSplitSpec,
    TrafficTargetSpec,
)
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = [
    "VALIDATORS",
    "validate_http_route_group",
    "validate_tcp_route",
    "validate_traffic_split",
    "validate_traffic_target",
]

_ROUTE_KINDS = ("HTTPRouteGroup", "TCPRoute")


def validate_traffic_split(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, TrafficSplitSpec)
    f = Findings(resource)
    f.add("spec.service", _service_name_problem(spec.service))
    if not spec.backends:
        f.error("spec.backends", "a TrafficSplit needs at least one backend")
    seen: set[str] = set()
    for i, backend in enumerate(spec.backends):
        path = f"spec.backends[{i}]"
        f.add(f"{path}.service", _service_name_problem(backend.service))
        if backend.weight < 0:
            f.error(f"{path}.weight", f"weight {backend.weight} must not be negative")
        if backend.service in seen:
            f.error(f"{path}.service", f"backend {backend.service!r} is listed twice")
        seen.add(backend.service)
        if backend.service == spec.service:
            f.warning(
                f"{path}.service",
                "a backend that is the root service itself sends its share to every "
                "version the root service selects (SMI: splits are not self-referential)",
            )
    if spec.backends and all(b.weight == 0 for b in spec.backends):
        f.error("spec.backends", "every backend has weight 0: no backend would get traffic")
    if spec.matches and resource.api_version.endswith("v1alpha2"):
        f.error("spec.matches", "matches needs split.smi-spec.io/v1alpha3 or later")
    for i, match in enumerate(spec.matches):
        if match.kind != "HTTPRouteGroup":
            f.error(
                f"spec.matches[{i}].kind",
                f"unsupported match kind {match.kind!r} (use HTTPRouteGroup)",
            )
    return f.items


def _service_name_problem(name: str) -> str | None:
    # A Service of the TrafficSplit's namespace, by name (an FQDN is tolerated).
    first = name.split(".", 1)[0]
    return checks.check_dns1123_label(first, "service name")


def validate_http_route_group(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, HTTPRouteGroupSpec)
    f = Findings(resource)
    if not spec.matches:
        f.error("spec.matches", "an HTTPRouteGroup needs at least one match")
    names: set[str] = set()
    for i, match in enumerate(spec.matches):
        path = f"spec.matches[{i}]"
        if match.name in names:
            f.error(f"{path}.name", f"duplicate match name {match.name!r}")
        names.add(match.name)
        if match.path_regex is not None:
            f.add(f"{path}.pathRegex", checks.check_regex(match.path_regex))
        for j, method in enumerate(match.methods):
            if method != "*" and not method.isalpha():
                f.error(f"{path}.methods[{j}]", f"invalid HTTP method {method!r}")
        for header, value in match.headers.items():
            f.add(f"{path}.headers.{header}", checks.check_header_name(header))
            f.add(f"{path}.headers.{header}", checks.check_regex(value))
    return f.items


def validate_tcp_route(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, SMITCPRouteSpec)
    f = Findings(resource)
    if spec.matches is not None:
        if resource.api_version.endswith("v1alpha3"):
            f.error("spec.matches", "TCPRoute matches needs specs.smi-spec.io/v1alpha4")
        for i, port in enumerate(spec.matches.ports):
            f.add(f"spec.matches.ports[{i}]", checks.check_port(port))
    return f.items


def validate_traffic_target(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, TrafficTargetSpec)
    f = Findings(resource)
    _identity(f, spec.destination, "spec.destination")
    destination_ns = spec.destination.namespace or resource.namespace
    if destination_ns != resource.namespace:
        f.error(
            "spec.destination.namespace",
            f"the destination must be in the TrafficTarget's namespace {resource.namespace!r}",
        )
    if not spec.sources:
        f.error("spec.sources", "a TrafficTarget needs at least one source")
    for i, source in enumerate(spec.sources):
        _identity(f, source, f"spec.sources[{i}]")
    if not spec.rules:
        f.error("spec.rules", "a TrafficTarget needs at least one rule")
    for i, rule in enumerate(spec.rules):
        if rule.kind not in _ROUTE_KINDS:
            f.error(
                f"spec.rules[{i}].kind",
                f"unsupported rule kind {rule.kind!r} (use {' or '.join(_ROUTE_KINDS)})",
            )
        elif rule.kind == "TCPRoute" and rule.matches:
            f.error(f"spec.rules[{i}].matches", "matches applies to HTTPRouteGroup rules only")
    return f.items


def _identity(f: Findings, identity: IdentityBinding, path: str) -> None:
    if identity.kind != "ServiceAccount":
        f.error(f"{path}.kind", f"unsupported kind {identity.kind!r} (use ServiceAccount)")
    f.add(f"{path}.name", checks.check_dns1123_subdomain(identity.name, "service account"))
    if identity.namespace is not None:
        f.add(f"{path}.namespace", checks.check_dns1123_label(identity.namespace, "namespace"))
    if identity.port is not None:
        f.add(f"{path}.port", checks.check_port(identity.port))


#: kind -> semantic validator (merged into ``api.validation.VALIDATORS``).
VALIDATORS: Final[Mapping[str, Callable[[Resource], list[Diagnostic]]]] = MappingProxyType(
    {
        "TrafficSplit": validate_traffic_split,
        "TrafficTarget": validate_traffic_target,
        "HTTPRouteGroup": validate_http_route_group,
        "SMITCPRoute": validate_tcp_route,
    }
)
