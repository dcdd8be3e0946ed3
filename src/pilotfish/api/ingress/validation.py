"""Semantic checks of Ingress and IngressClass, following Kubernetes' own rules.

Kubernetes refuses an Ingress path without ``pathType``, a ``Prefix`` or
``Exact`` path that is not absolute, a backend naming both (or neither) a
Service and a resource, and a Service port given both (or neither) by name
and number; Pilotfish reports the same at the field's line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.ingress.types import IngressBackend, IngressClassSpec, IngressSpec
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["PATH_TYPES", "VALIDATORS", "validate_ingress", "validate_ingress_class"]

#: The ``pathType`` values Kubernetes accepts.
PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")

# Kubernetes refuses these in Exact and Prefix paths (they would be normalized away).
_INVALID_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


def validate_ingress(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, IngressSpec)
    f = Findings(resource)
    if spec.default_backend is None and not spec.rules:
        f.error("spec", "an Ingress needs a defaultBackend or at least one rule")
    if spec.ingress_class_name is not None:
        f.add("spec.ingressClassName", checks.check_dns1123_subdomain(spec.ingress_class_name))
    if spec.default_backend is not None:
        _backend(f, spec.default_backend, "spec.defaultBackend")
    for i, tls in enumerate(spec.tls):
        path = f"spec.tls[{i}]"
        for j, host in enumerate(tls.hosts):
            f.add(f"{path}.hosts[{j}]", _host_problem(host))
        if tls.secret_name is None:
            f.warning(f"{path}", "a tls entry without secretName is ignored (no certificate)")
        else:
            f.add(
                f"{path}.secretName",
                checks.check_dns1123_subdomain(tls.secret_name, "secretName"),
            )
    for i, rule in enumerate(spec.rules):
        path = f"spec.rules[{i}]"
        if rule.host is not None:
            f.add(f"{path}.host", _host_problem(rule.host))
        if rule.http is None:
            f.warning(path, "a rule without http paths routes nothing")
            continue
        if not rule.http.paths:
            f.error(f"{path}.http.paths", "http needs at least one path")
        for j, http_path in enumerate(rule.http.paths):
            p = f"{path}.http.paths[{j}]"
            _path(f, http_path.path, http_path.path_type, p)
            _backend(f, http_path.backend, f"{p}.backend")
    return f.items


def _host_problem(host: str) -> str | None:
    """Kubernetes: a DNS-1123 subdomain, optionally with a ``*.`` wildcard label; no IP."""
    if host == "*" or (host and host.replace(".", "").isdigit()):
        return f"invalid host {host!r}: must be a DNS name, not an IP or a bare '*'"
    name = host[2:] if host.startswith("*.") else host
    problem = checks.check_dns1123_subdomain(name, "host")
    if problem is not None:
        return problem
    return None


def _path(f: Findings, value: str | None, path_type: str | None, p: str) -> None:
    if path_type is None:
        f.error(f"{p}.pathType", f"pathType is required (one of {', '.join(PATH_TYPES)})")
        return
    if path_type not in PATH_TYPES:
        f.error(
            f"{p}.pathType",
            f"unknown pathType {path_type!r} (use one of {', '.join(PATH_TYPES)})",
        )
        return
    if path_type == "ImplementationSpecific" and not value:
        return
    if not value or not value.startswith("/"):
        f.error(f"{p}.path", f"path {value or ''!r} must be an absolute path (start with '/')")
        return
    if path_type != "ImplementationSpecific" and (
        any(part in value for part in _INVALID_PATH_PARTS) or value.endswith(_INVALID_PATH_SUFFIXES)
    ):
        f.error(
            f"{p}.path",
            f"path {value!r} must not contain '//', '/./', '/../' or '%2f' (pathType {path_type})",
        )


def _backend(f: Findings, backend: IngressBackend, p: str) -> None:
    if (backend.service is None) == (backend.resource is None):
        f.error(p, "a backend names exactly one of service or resource")
        return
    if backend.resource is not None:
        f.warning(
            f"{p}.resource",
            "resource backends are not served (only Service backends are); "
            "requests for this path are not routed",
        )
        return
    service = backend.service
    assert service is not None
    f.add(f"{p}.service.name", checks.check_dns1123_label(service.name, "service name"))
    port = service.port
    if (port.name is None) == (port.number is None):
        f.error(f"{p}.service.port", "a service port is given by exactly one of name or number")
    elif port.number is not None:
        f.add(f"{p}.service.port.number", checks.check_port(port.number))
    elif port.name is not None:
        f.add(f"{p}.service.port.name", checks.check_dns1123_label(port.name, "port name"))


def validate_ingress_class(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, IngressClassSpec)
    f = Findings(resource)
    if not spec.controller:
        f.error("spec.controller", "an IngressClass needs a controller")
    elif "/" not in spec.controller:
        f.error(
            "spec.controller",
            f"controller {spec.controller!r} must be a domain-prefixed path "
            "(such as istio.io/ingress-controller)",
        )
    return f.items


#: kind -> semantic validator (merged into ``api.validation.VALIDATORS``).
VALIDATORS: Final[Mapping[str, Callable[[Resource], list[Diagnostic]]]] = MappingProxyType(
    {"Ingress": validate_ingress, "IngressClass": validate_ingress_class}
)
