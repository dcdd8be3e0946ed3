"""Semantic checks of a Kubernetes Service, following Kubernetes' own rules."""

from __future__ import annotations

import re

from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["validate"]

# IANA service name: what a named targetPort must look like.
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, ServiceSpec)
    f = Findings(resource)
    # Service names become DNS labels (name.namespace.svc...).
    f.add("metadata.name", checks.check_dns1123_label(resource.name, "Service name"))
    if spec.type == "ExternalName":
        if not spec.external_name:
            f.error("spec.externalName", "type ExternalName needs externalName")
        else:
            f.add("spec.externalName", checks.check_host(spec.external_name, allow_wildcard=False))
    elif not spec.ports and spec.cluster_ip != "None":
        f.error("spec.ports", "a Service needs at least one port")
    several = len(spec.ports) > 1
    names: set[str] = set()
    port_protocols: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        f.add(f"{path}.port", checks.check_port(port.port))
        if port.name is None or port.name == "":
            if several:
                f.error(f"{path}.name", "a name is required when a Service has several ports")
        else:
            problem = checks.check_dns1123_label(port.name, "port name")
            f.add(f"{path}.name", problem)
            if problem is None and port.name in names:
                f.error(f"{path}.name", f"duplicate port name {port.name!r}")
            names.add(port.name)
        key = (port.port, port.protocol)
        if key in port_protocols:
            f.error(f"{path}.port", f"duplicate port {port.port}/{port.protocol}")
        port_protocols.add(key)
        target = port.target_port
        if isinstance(target, int):
            f.add(f"{path}.targetPort", checks.check_port(target, "targetPort"))
        elif isinstance(target, str) and (len(target) > 15 or not _IANA_SVC_NAME.match(target)):
            f.error(f"{path}.targetPort", f"{target!r} is neither a port number nor a port name")
        if port.node_port is not None:
            f.add(f"{path}.nodePort", checks.check_port(port.node_port, "nodePort"))
    if spec.selector:
        for p, msg in checks.label_problems(spec.selector, "spec.selector"):
            f.error(p, msg)
    if spec.cluster_ip not in (None, "", "None"):
        f.add("spec.clusterIP", _ip_problem(spec.cluster_ip))
    for i, ip in enumerate(spec.cluster_ips):
        if ip != "None":
            f.add(f"spec.clusterIPs[{i}]", _ip_problem(ip))
    return f.items


def _ip_problem(value: str) -> str | None:
    if "/" in value:
        return f"{value!r} is not an IP address"
    return checks.check_cidr_or_ip(value)
