"""Semantic checks of a ServiceEntry, following Istio's validation rules.

Resolution and endpoints must agree: ``NONE`` takes no endpoints; ``STATIC``
endpoints are IP addresses (or ``unix://`` sockets); ``DNS`` endpoints may be
host names; ``DNS_ROUND_ROBIN`` takes at most one endpoint. A ServiceEntry
selects its endpoints by ``endpoints`` or by ``workloadSelector``, never both.
"""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.service_entry import ServiceEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.workload_entry import check_workload

__all__ = ["validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, ServiceEntrySpec)
    f = Findings(resource)
    if not spec.hosts:
        f.error("spec.hosts", "a ServiceEntry needs at least one host")
    for i, host in enumerate(spec.hosts):
        if host == "*":
            f.error(f"spec.hosts[{i}]", "'*' is not a valid ServiceEntry host")
        else:
            f.add(f"spec.hosts[{i}]", checks.check_host(host))
    for i, address in enumerate(spec.addresses):
        f.add(f"spec.addresses[{i}]", checks.check_cidr_or_ip(address))
    if any("/" in a for a in spec.addresses) and spec.resolution not in ("NONE", "STATIC"):
        f.error("spec.addresses", "CIDR addresses need resolution NONE or STATIC")
    port_names = _ports(f, spec)
    if spec.workload_selector is not None and spec.endpoints is not None:
        f.error("spec.workloadSelector", "workloadSelector and endpoints are mutually exclusive")
    if spec.workload_selector is not None:
        ws = spec.workload_selector.labels
        for p, msg in checks.label_problems(ws, "spec.workloadSelector.labels"):
            f.error(p, msg)
    _resolution(f, spec, port_names)
    for i, problem in checks.check_export_to(spec.export_to):
        f.error(f"spec.exportTo[{i}]", problem)
    return f.items


def _ports(f: Findings, spec: ServiceEntrySpec) -> set[str]:
    """Check the ports; returns their names (endpoints refer to them)."""
    port_names: set[str] = set()
    port_numbers: set[int] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        f.add(f"{path}.number", checks.check_port(port.number))
        if port.number in port_numbers:
            f.error(f"{path}.number", f"port {port.number} is already defined")
        port_numbers.add(port.number)
        problem = checks.check_dns1123_label(port.name, "port name")
        f.add(f"{path}.name", problem)
        if problem is None and port.name in port_names:
            f.error(f"{path}.name", f"port name {port.name!r} is already defined")
        port_names.add(port.name)
        if port.protocol:
            f.add(f"{path}.protocol", checks.check_protocol(port.protocol))
        if port.target_port is not None:
            f.add(f"{path}.targetPort", checks.check_port(port.target_port))
    return port_names


def _resolution(f: Findings, spec: ServiceEntrySpec, port_names: set[str]) -> None:
    """What each resolution allows of endpoints, selectors, hosts and ports."""
    endpoints = spec.endpoints or []
    if spec.resolution == "NONE":
        if endpoints:
            f.error("spec.endpoints", "resolution NONE takes no endpoints")
        if spec.workload_selector is not None:
            f.warning(
                "spec.workloadSelector", "workloadSelector has no effect with resolution NONE"
            )
        return
    if spec.resolution == "STATIC":
        if not endpoints and spec.workload_selector is None:
            f.warning(
                "spec.resolution",
                "resolution STATIC without endpoints or a workloadSelector: no endpoints",
            )
    elif not endpoints:  # DNS, DNS_ROUND_ROBIN resolve the hosts themselves
        for i, host in enumerate(spec.hosts):
            if host.startswith("*"):
                f.error(
                    f"spec.hosts[{i}]",
                    f"resolution {spec.resolution} without endpoints needs full DNS names "
                    "as hosts, not wildcards",
                )
    if spec.resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
        f.error("spec.endpoints", "resolution DNS_ROUND_ROBIN takes at most one endpoint")
    for i, ep in enumerate(endpoints):
        check_workload(
            f,
            ep,
            f"spec.endpoints[{i}]",
            allow_hostname=spec.resolution != "STATIC",
            port_names=port_names,
        )
    if len(spec.hosts) > 1:
        for i, port in enumerate(spec.ports):
            if checks.protocol_family(port.protocol) not in ("http", "tls"):
                f.error(
                    f"spec.ports[{i}].protocol",
                    "several hosts need HTTP or TLS ports: plain TCP cannot tell the hosts apart",
                )
                break
