"""Semantic checks of a Gateway, following Istio's validation rules."""

from __future__ import annotations

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.gateway import GatewaySpec, Server, ServerTLSSettings
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, GatewaySpec)
    f = Findings(resource)
    for p, msg in checks.label_problems(spec.selector, "spec.selector"):
        f.error(p, msg)
    if not spec.servers:
        f.error("spec.servers", "a Gateway needs at least one server")
    port_names: dict[str, int] = {}
    server_names: set[str] = set()
    for i, server in enumerate(spec.servers):
        path = f"spec.servers[{i}]"
        _server(f, server, path)
        port_name = server.port.name
        if port_name:
            number = port_names.setdefault(port_name, server.port.number)
            if number != server.port.number:
                f.error(f"{path}.port.name", f"port name {port_name!r} is used for another port")
        if server.name:
            if server.name in server_names:
                f.error(f"{path}.name", f"duplicate server name {server.name!r}")
            server_names.add(server.name)
    return f.items


def _server(f: Findings, server: Server, path: str) -> None:
    port = server.port
    f.add(f"{path}.port.number", checks.check_port(port.number))
    if port.target_port is not None:
        f.add(f"{path}.port.targetPort", checks.check_port(port.target_port))
    protocol_problem = checks.check_protocol(port.protocol)
    f.add(f"{path}.port.protocol", protocol_problem)
    if not server.hosts:
        f.error(f"{path}.hosts", "a server needs at least one host")
    for j, host in enumerate(server.hosts):
        hp = f"{path}.hosts[{j}]"
        namespace, slash, name = host.rpartition("/")
        if slash and namespace not in ("*", ".", "~"):
            f.add(hp, checks.check_dns1123_label(namespace, "namespace"))
        f.add(hp, checks.check_host(name, allow_ip=True))
    if server.bind is not None and not server.bind.startswith("unix://"):
        f.add(f"{path}.bind", checks.check_cidr_or_ip(server.bind))
    family = checks.protocol_family(port.protocol)
    is_tls = protocol_problem is None and family == "tls"
    if is_tls and server.tls is None:
        f.error(f"{path}.tls", f"a {port.protocol.upper()} server needs tls settings")
    if server.tls is not None:
        _tls(f, server.tls, f"{path}.tls")


def _tls(f: Findings, tls: ServerTLSSettings, path: str) -> None:
    mode = tls.mode
    if mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and not (
        tls.credential_name or tls.credential_names
    ):
        if not tls.server_certificate:
            f.error(
                f"{path}.serverCertificate",
                f"{mode} TLS needs serverCertificate (or credentialName)",
            )
        if not tls.private_key:
            f.error(f"{path}.privateKey", f"{mode} TLS needs privateKey (or credentialName)")
        if mode != "SIMPLE" and not tls.ca_certificates:
            f.error(
                f"{path}.caCertificates", f"{mode} TLS needs caCertificates (or credentialName)"
            )
    if tls.credential_name and tls.credential_names:
        f.error(path, "credentialName and credentialNames are mutually exclusive")
    if (
        tls.min_protocol_version
        and tls.max_protocol_version
        and tls.min_protocol_version != "TLS_AUTO"
        and tls.max_protocol_version != "TLS_AUTO"
        and tls.min_protocol_version > tls.max_protocol_version
    ):
        f.error(f"{path}.minProtocolVersion", "minProtocolVersion is above maxProtocolVersion")
