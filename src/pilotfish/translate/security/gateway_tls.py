"""TLS on gateway servers: terminated HTTPS (SIMPLE, MUTUAL) and SNI passthrough.

Theory of operation. ``translate.gateway`` groups a gateway's servers by
port and asks this module for the TLS pieces:

- ``server_downstream_tls``: the TLS a terminating server presents. Its
  certificate comes from ``credentialName`` (a ``v1`` Secret in the gateway
  *workload's* namespace, as in Istio: the proxy's namespace, never the
  Gateway resource's), or from ``serverCertificate``/``privateKey`` files.
  ``MUTUAL`` adds the CA (``ca.crt`` of the Secret, a ``<name>-cacert``
  Secret, or ``caCertificates``) and requires a client certificate;
  ``OPTIONAL_MUTUAL`` verifies one when presented, and, on an Istio Gateway
  marked ``ACCEPT_UNTRUSTED_ANNOTATION`` (a Gateway API listener in
  ``AllowInsecureFallback`` mode), lets one that does not verify through. A
  Secret's contents never enter the listener: it names SDS resources
  (``kubernetes://<namespace>/<name>``, ``...-cacert``) that the control plane
  serves over the gateway's ADS stream, to its verified identity only. A
  ``credentialName`` of the form ``<namespace>/<name>`` naming another
  namespace is refused (Istio's rule: a gateway reads Secrets of its own
  namespace). A server whose material is missing is skipped with a log line;
  the rest of the gateway is unaffected.
- ``passthrough_chains``: for ``PASSTHROUGH`` servers, one filter chain per
  VirtualService ``tls`` route, selected by the client's SNI (``sniHosts``)
  and proxied, still encrypted, to the route's destination cluster.
- ``sni_server_names``: the SNI a terminating server's chain matches when a
  port carries several TLS servers.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from pilotfish.api.networking.gateway import Server, ServerTLSSettings
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.resource import Resource
from pilotfish.ir import (
    CertSource,
    DownstreamTls,
    FilterChain,
    FilterChainMatch,
    credential_ca_name,
    credential_name,
)
from pilotfish.ir.security import AuthzPolicy
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.gateway_markers import ACCEPT_UNTRUSTED_ANNOTATION
from pilotfish.translate.l4_routes import tcp_proxy_for
from pilotfish.translate.security.mtls import mesh_downstream_tls
from pilotfish.translate.security.secrets import credential_material, split_credential_name
from pilotfish.translate.virtual_hosts import bound_gateways, host_matches

__all__ = [
    "GATEWAY_ALPN",
    "TERMINATING_MODES",
    "https_route_name",
    "passthrough_chains",
    "server_downstream_tls",
    "sni_server_names",
]

log = logging.getLogger("pilotfish.translate")

GATEWAY_ALPN = ("h2", "http/1.1")
TERMINATING_MODES = frozenset({"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"})
_VERSIONS = {
    "TLS_AUTO": "",
    "TLSV1_0": "TLSv1_0",
    "TLSV1_1": "TLSv1_1",
    "TLSV1_2": "TLSv1_2",
    "TLSV1_3": "TLSv1_3",
}


def https_route_name(port: int, server: Server, gateway: Resource) -> str:
    """Istio's route name for a terminated HTTPS server:
    ``https.443.<portName>.<gateway>.<namespace>``."""
    port_name = server.port.name or str(port)
    return f"https.{port}.{port_name}.{gateway.name}.{gateway.namespace}"


def _host_part(host: str) -> str:
    return host.rpartition("/")[2].lower()


def sni_server_names(server: Server) -> tuple[str, ...]:
    """SNI names a terminating server answers (``*`` anywhere means any: empty)."""
    hosts = [_host_part(h) for h in server.hosts]
    if not hosts or "*" in hosts:
        return ()
    return tuple(dict.fromkeys(hosts))


def _skip(where: str, why: str) -> None:
    log.warning("%s: %s; the server is not served", where, why)


def _credential(
    snapshot: Snapshot, namespace: str, tls: ServerTLSSettings, where: str
) -> tuple[CertSource, CertSource | None] | None:
    """(server certificate, CA or None) from a Secret or files; None: unusable."""
    credential = tls.credential_name or (tls.credential_names[0] if tls.credential_names else "")
    if credential:
        secret_ns, name = split_credential_name(namespace, credential)
        if secret_ns != namespace:
            _skip(
                where,
                f"credentialName {credential!r} names a Secret outside the gateway's "
                f"namespace {namespace!r}; a gateway may only use its own namespace's Secrets",
            )
            return None
        material = credential_material(snapshot, namespace, name)
        if material is None or not (material.cert_pem and material.key_pem):
            _skip(where, f"Secret {namespace}/{name} with tls.crt and tls.key not found")
            return None
        ca = CertSource(credential=credential_ca_name(namespace, name)) if material.ca_pem else None
        return CertSource(credential=credential_name(namespace, name)), ca
    if not (tls.server_certificate and tls.private_key):
        _skip(where, "neither credentialName nor serverCertificate/privateKey is set")
        return None
    ca = CertSource(cert_file=tls.ca_certificates) if tls.ca_certificates else None
    return CertSource(cert_file=tls.server_certificate, key_file=tls.private_key), ca


def server_downstream_tls(
    snapshot: Snapshot, view: ProxyView, gateway: Resource, server: Server
) -> DownstreamTls | None:
    """The TLS a terminating server presents, or None (logged) when it cannot be
    served: missing Secret or files, ``MUTUAL`` without a CA, ``ISTIO_MUTUAL``
    on a gateway without a mesh certificate."""
    tls = server.tls
    assert tls is not None and tls.mode in TERMINATING_MODES
    where = f"gateway {gateway.namespace}/{gateway.name} port {server.port.number}"
    low = _VERSIONS.get(tls.min_protocol_version or "TLS_AUTO", "")
    high = _VERSIONS.get(tls.max_protocol_version or "TLS_AUTO", "")
    if tls.mode == "ISTIO_MUTUAL":
        if not view.workload_certs:
            _skip(where, "ISTIO_MUTUAL needs a gateway with a mesh certificate")
            return None
        mesh = mesh_downstream_tls()
        return DownstreamTls(
            mesh.server_cert,
            mesh.trusted_ca,
            require_client_cert=True,
            alpn=GATEWAY_ALPN,
            subject_alt_names=tuple(tls.subject_alt_names),
            min_version=low,
            max_version=high,
        )
    found = _credential(snapshot, view.namespace, tls, where)
    if found is None:
        return None
    cert, ca = found
    if tls.mode == "SIMPLE":
        return DownstreamTls(cert, alpn=GATEWAY_ALPN, min_version=low, max_version=high)
    if ca is None:
        _skip(where, f"{tls.mode} needs a CA (ca.crt, a -cacert Secret or caCertificates)")
        return None
    # A Gateway API listener in AllowInsecureFallback mode (``OPTIONAL_MUTUAL``
    # marked by the converter) also lets a certificate that does not verify in.
    untrusted = (
        tls.mode == "OPTIONAL_MUTUAL"
        and gateway.metadata.annotations.get(ACCEPT_UNTRUSTED_ANNOTATION) == "true"
    )
    return DownstreamTls(
        cert,
        trusted_ca=ca,
        require_client_cert=tls.mode == "MUTUAL",
        alpn=GATEWAY_ALPN,
        subject_alt_names=tuple(tls.subject_alt_names),
        min_version=low,
        max_version=high,
        accept_untrusted=untrusted,
    )


def _within_servers(sni: str, servers: list[tuple[str, Server]], vs: Resource) -> bool:
    for gw_key, server in servers:
        if gw_key not in bound_gateways(vs):
            continue
        for host in server.hosts:
            ns, _, pattern = host.rpartition("/")
            if ns not in ("", "*") and ns != vs.namespace:
                continue
            pattern = pattern.lower()
            if host_matches(pattern, sni) or host_matches(sni, pattern):
                return True
    return False


def passthrough_chains(
    snapshot: Snapshot,
    port: int,
    servers: list[tuple[str, Server]],
    *,
    authz: tuple[AuthzPolicy, ...] = (),
) -> list[FilterChain]:
    """Filter chains of a port's ``PASSTHROUGH`` servers (``gw_key`` is
    ``namespace/name``): one per VirtualService ``tls`` route match that applies
    to one of the servers, selected by SNI, TCP-proxied to its destination.
    ``authz``: the gateway's authorization policies for TCP on ``port``, enforced
    on every chain (the traffic stays encrypted: only connection attributes)."""
    keys = {k for k, _ in servers}
    chains: list[FilterChain] = []
    for vs in snapshot.of_kind("VirtualService"):
        spec = vs.spec
        assert isinstance(spec, VirtualServiceSpec)
        if not spec.tls or not keys & bound_gateways(vs):
            continue
        for index, route in enumerate(spec.tls):
            if not route.route:
                continue
            name = f"{vs.namespace}/{vs.name}/tls/{index}"
            # Weighted destinations split connections, as on sidecars.
            proxy = replace(tcp_proxy_for(snapshot, name, route.route, vs, port), authz=authz)
            names: list[str] = []
            for match in route.match:
                if match.port is not None and match.port != port:
                    continue
                if match.gateways:
                    gws = {g if "/" in g else f"{vs.namespace}/{g}" for g in match.gateways}
                    if not gws & keys:
                        continue
                names += [
                    s.lower() for s in match.sni_hosts if _within_servers(s.lower(), servers, vs)
                ]
            if names:
                chains.append(
                    FilterChain(
                        name, proxy, FilterChainMatch(server_names=tuple(dict.fromkeys(names)))
                    )
                )
    return chains
