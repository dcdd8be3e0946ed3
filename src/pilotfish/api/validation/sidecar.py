"""Semantic checks of a Sidecar, following Istio's validation rules.

Egress hosts are ``namespace/dnsName``: the namespace is ``*`` (any), ``.``
(the Sidecar's own), ``~`` (none) or a namespace name; the dnsName is ``*``,
a wildcard ``*.example.com`` or a host (short names resolve relative to the
namespace part). At most one egress listener has no port (the catch-all) and
it must come last; ports are unique. Ingress listeners need a port, unique,
and a ``defaultEndpoint`` of ``127.0.0.1:PORT``, ``0.0.0.0:PORT`` or a
``unix://`` path. ``bind``/``captureMode`` and ingress ``tls`` are accepted
but not applied yet (warnings say so).
"""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.sidecar import SidecarSpec
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["check_egress_host", "validate"]


def check_egress_host(value: str) -> str | None:
    """None when ``value`` is a valid ``namespace/dnsName`` egress host, else the reason."""
    ns, sep, name = value.partition("/")
    if not sep or not ns or not name:
        return f"egress host {value!r} must be of the form namespace/dnsName (e.g. './*')"
    if ns not in ("*", ".", "~"):
        problem = checks.check_dns1123_label(ns, "namespace")
        if problem is not None:
            return problem
    return checks.check_host(name)


def _check_endpoint(endpoint: str) -> str | None:
    if endpoint.startswith("unix://"):
        return None if len(endpoint) > len("unix://") else "unix:// needs a socket path"
    host, sep, port = endpoint.rpartition(":")
    if not sep or host not in ("127.0.0.1", "0.0.0.0", "[::1]", "[::]"):
        return (
            f"defaultEndpoint {endpoint!r} must be 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, "
            "[::]:PORT or unix://PATH"
        )
    if not port.isdigit():
        return f"defaultEndpoint {endpoint!r} has no valid port"
    return checks.check_port(int(port))


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, SidecarSpec)
    f = Findings(resource)
    if not (
        spec.egress or spec.ingress or spec.outbound_traffic_policy or spec.inbound_connection_pool
    ):
        f.error("spec", "a Sidecar needs egress, ingress or outboundTrafficPolicy")
    if spec.workload_selector is not None:
        for p, msg in checks.label_problems(
            spec.workload_selector.labels, "spec.workloadSelector.labels"
        ):
            f.error(p, msg)
        if resource.namespace and not spec.workload_selector.labels:
            f.warning("spec.workloadSelector", "an empty selector selects every workload")
    egress_ports: set[int] = set()
    for i, eg in enumerate(spec.egress):
        path = f"spec.egress[{i}]"
        if not eg.hosts:
            f.error(f"{path}.hosts", "an egress listener needs at least one host")
        for j, host in enumerate(eg.hosts):
            f.add(f"{path}.hosts[{j}]", check_egress_host(host))
        if eg.port is None:
            if i != len(spec.egress) - 1:
                f.error(path, "the egress listener without a port (catch-all) must be the last")
        else:
            f.add(f"{path}.port.number", checks.check_port(eg.port.number))
            if eg.port.protocol:
                f.add(f"{path}.port.protocol", checks.check_protocol(eg.port.protocol))
            if eg.port.number in egress_ports:
                f.error(f"{path}.port.number", f"port {eg.port.number} is already defined")
            egress_ports.add(eg.port.number)
        if eg.bind is not None or eg.capture_mode not in (None, "DEFAULT"):
            f.warning(path, "bind and captureMode are not applied yet: the mesh's layout is kept")
    ingress_ports: set[int] = set()
    for i, ing in enumerate(spec.ingress):
        path = f"spec.ingress[{i}]"
        f.add(f"{path}.port.number", checks.check_port(ing.port.number))
        if ing.port.protocol:
            f.add(f"{path}.port.protocol", checks.check_protocol(ing.port.protocol))
        if ing.port.number in ingress_ports:
            f.error(f"{path}.port.number", f"port {ing.port.number} is already defined")
        ingress_ports.add(ing.port.number)
        if ing.default_endpoint is not None:
            f.add(f"{path}.defaultEndpoint", _check_endpoint(ing.default_endpoint))
            if ing.default_endpoint.startswith("unix://"):
                f.warning(f"{path}.defaultEndpoint", "unix:// endpoints are not supported yet")
        if ing.tls is not None:
            f.warning(f"{path}.tls", "ingress tls is not applied yet: the port serves without it")
    return f.items
