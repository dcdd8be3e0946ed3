"""Mesh mTLS on both sides of a connection, and DestinationRule client TLS.

Theory of operation.

Client side (clusters). Without a DestinationRule ``tls``, a proxy that has
a workload certificate uses *auto mTLS*: ``Cluster.auto_mtls`` makes Envoy
originate mesh mTLS only to endpoints labelled ``tlsMode: istio`` (their
sidecar has a certificate too) and plaintext to the rest. With a rule's
``tls``: ``DISABLE`` is plaintext, ``ISTIO_MUTUAL`` mesh mTLS to every
endpoint, ``SIMPLE``/``MUTUAL`` TLS with the user's certificates (files, or a
``credentialName`` Secret in the proxy's namespace, whose contents the control
plane serves over SDS on the proxy's ADS stream: see ``secrets``).

Server identity check. Auto mTLS verifies the server's chain against the mesh
root and checks no SAN unless the rule lists ``subjectAltNames``. Istio
derives SANs from the service accounts of a service's endpoints, but that
makes every cluster depend on endpoint data: an endpoint-only change would
then rewrite CDS (and drain connections) instead of pushing EDS alone. Only
the mesh CA signs certificates that chain to the root, and it signs only mesh
identities, so the root check already proves "a mesh workload"; naming the
exact workload is what authorization on the server does with the verified
client identity.

Server side (inbound filter chains). ``PeerAuthentication`` decides per port:
``STRICT`` accepts only mTLS (a plaintext connection to the port is closed),
``PERMISSIVE`` both (``tls_inspector`` tells them apart), ``DISABLE`` only
plaintext. TLS chains pass the verified caller to the app in
``x-forwarded-client-cert``; plaintext chains strip that header.

ALPN. Mesh clients offer ``istio-peer-exchange``/``istio`` (plus ``h2`` for
HTTP/2 clusters), as Istio's do. Servers offer only ``h2``/``http/1.1``: a
server picks its *own* first protocol the client also offers, and the HTTP
connection manager takes any negotiated protocol other than ``h2`` as HTTP/1,
so a server listing ``istio-peer-exchange`` first would make gRPC callers fail.
"""

from __future__ import annotations

import dataclasses
import logging

from pilotfish.api.networking.destination_rule import ClientTLSSettings
from pilotfish.ir import (
    SDS_ROOT_CA,
    SDS_WORKLOAD_CERT,
    CertSource,
    DownstreamTls,
    FilterChain,
    FilterChainMatch,
    HttpConnectionManager,
    TcpProxy,
    UpstreamTls,
    credential_ca_name,
    credential_name,
)
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import MeshService
from pilotfish.translate.names import BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER
from pilotfish.translate.security.peer_authn import EffectiveMode
from pilotfish.translate.security.secrets import credential_material, split_credential_name

__all__ = [
    "INBOUND_ALPN",
    "ISTIO_ALPN",
    "ISTIO_ALPN_H2",
    "TLS_MODE_LABEL",
    "ClusterTls",
    "cluster_tls",
    "inbound_mtls_chains",
    "inbound_passthrough_chains",
    "istio_sni",
    "mesh_downstream_tls",
    "mesh_upstream_tls",
]

log = logging.getLogger("pilotfish.translate")

TLS_MODE_LABEL = "security.istio.io/tlsMode"
ISTIO_ALPN = ("istio-peer-exchange", "istio")
ISTIO_ALPN_H2 = (*ISTIO_ALPN, "h2")
INBOUND_ALPN = ("h2", "http/1.1")
#: The ALPN values a mesh client offers (Istio's list): under PERMISSIVE only TLS
#: offering one of them is mesh mTLS; other TLS (a gateway originating TLS to
#: the app itself, as a BackendTLSPolicy asks) goes on to the app untouched.
MESH_ALPN_MATCH = ("istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterTls:
    """What goes into ``Cluster.tls`` and ``Cluster.auto_mtls`` (at most one is set)."""

    tls: UpstreamTls | None = None
    auto_mtls: UpstreamTls | None = None


def istio_sni(hostname: str, port: int, subset: str = "") -> str:
    """Istio's SNI for in-mesh mTLS: ``outbound_.9080_.v1_.reviews.default.svc.cluster.local``."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def mesh_upstream_tls(
    sni: str, *, http2: bool = False, subject_alt_names: tuple[str, ...] = ()
) -> UpstreamTls:
    """Mesh mTLS as a client: the workload certificate, the mesh root."""
    return UpstreamTls(
        "ISTIO_MUTUAL",
        client_cert=CertSource(sds=SDS_WORKLOAD_CERT),
        trusted_ca=CertSource(sds=SDS_ROOT_CA),
        subject_alt_names=subject_alt_names,
        sni=sni,
        alpn=ISTIO_ALPN_H2 if http2 else ISTIO_ALPN,
    )


def mesh_downstream_tls() -> DownstreamTls:
    """Mesh mTLS as a server: the workload certificate, client certificates required
    and verified against the mesh root."""
    return DownstreamTls(
        server_cert=CertSource(sds=SDS_WORKLOAD_CERT),
        trusted_ca=CertSource(sds=SDS_ROOT_CA),
        require_client_cert=True,
        alpn=INBOUND_ALPN,
    )


def _user_tls(
    snapshot: Snapshot, settings: ClientTLSSettings, namespace: str, http2: bool
) -> UpstreamTls:
    mode = settings.mode
    client_cert: CertSource | None = None
    ca: CertSource | None = None
    if settings.ca_certificates:
        ca = CertSource(cert_file=settings.ca_certificates)
    if mode == "MUTUAL" and settings.client_certificate and settings.private_key:
        client_cert = CertSource(
            cert_file=settings.client_certificate, key_file=settings.private_key
        )
    if settings.credential_name:
        secret_ns, name = split_credential_name(namespace, settings.credential_name)
        cert = CertSource(credential=credential_name(secret_ns, name))
        ca_ref = CertSource(credential=credential_ca_name(secret_ns, name))
        material = None
        if secret_ns != namespace:
            # Never served: the xDS server gives a proxy only its own namespace's Secrets.
            log.warning(
                "DestinationRule credentialName %s: a proxy of namespace %s may only use "
                "its own namespace's Secrets; the cluster will not connect",
                settings.credential_name,
                namespace,
            )
        else:
            material = credential_material(snapshot, namespace, name)
        if material is None:
            # Fail closed: the names resolve to nothing until the Secret exists, so
            # the cluster cannot connect instead of silently downgrading (as Istio).
            if secret_ns == namespace:
                log.warning(
                    "DestinationRule credentialName %s/%s: no such Secret; the cluster "
                    "will not connect until it exists",
                    namespace,
                    name,
                )
            if mode == "MUTUAL":
                client_cert = cert
            ca = ca_ref
        else:
            if mode == "MUTUAL" and material.cert_pem and material.key_pem:
                client_cert = cert
            if material.ca_pem:
                ca = ca_ref
    if mode == "MUTUAL" and client_cert is None:
        log.warning("DestinationRule tls MUTUAL without a client certificate: none is sent")
    skip = bool(settings.insecure_skip_verify)
    sans = tuple(settings.subject_alt_names) if ca is not None and not skip else ()
    return UpstreamTls(
        "MUTUAL" if mode == "MUTUAL" else "SIMPLE",
        client_cert=client_cert,
        trusted_ca=None if skip else ca,
        subject_alt_names=sans,
        sni=settings.sni or "",
        alpn=("h2",) if http2 else (),
        insecure_skip_verify=skip,
    )


def cluster_tls(
    snapshot: Snapshot,
    svc: MeshService,
    port: int,
    subset: str,
    settings: ClientTLSSettings | None,
    *,
    proxy_namespace: str,
    workload_certs: bool,
    http2: bool,
    original_dst: bool = False,
) -> ClusterTls:
    """The upstream TLS of cluster ``outbound|port|subset|svc`` for a proxy of
    ``proxy_namespace``; ``settings`` is the DestinationRule's effective ``tls``.

    Mesh mTLS (explicit ``ISTIO_MUTUAL`` or auto) needs ``workload_certs``:
    a proxy without a certificate cannot present one, so it stays plaintext.
    Auto mTLS is off for mesh-external services and original-destination
    clusters (they have no endpoint metadata to select TLS with).
    """
    sni = istio_sni(svc.hostname, port, subset)
    if settings is None:
        # meshConfig.enableAutoMtls: false leaves un-configured destinations plaintext.
        auto = snapshot.enable_auto_mtls
        if auto and workload_certs and not svc.mesh_external and not original_dst:
            return ClusterTls(auto_mtls=mesh_upstream_tls(sni, http2=http2))
        return ClusterTls()
    if settings.mode == "DISABLE":
        return ClusterTls()
    if settings.mode == "ISTIO_MUTUAL":
        if not workload_certs:
            return ClusterTls()
        return ClusterTls(
            tls=mesh_upstream_tls(
                settings.sni or sni,
                http2=http2,
                subject_alt_names=tuple(settings.subject_alt_names),
            )
        )
    return ClusterTls(tls=_user_tls(snapshot, settings, proxy_namespace, http2))


def _with_xfcc(flt: HttpConnectionManager | TcpProxy) -> HttpConnectionManager | TcpProxy:
    if isinstance(flt, HttpConnectionManager):
        return dataclasses.replace(flt, forward_client_cert=True)
    return flt


def inbound_mtls_chains(
    chain: FilterChain, mode: EffectiveMode, *, reject_plaintext: bool
) -> tuple[FilterChain, ...]:
    """The filter chains serving one inbound port in ``mode``, from its plaintext
    ``chain`` (whose match, if any, selects the port).

    ``STRICT``: one mTLS chain, plus (``reject_plaintext``) a plaintext chain
    that sends to ``BlackHoleCluster`` so plaintext cannot fall through to a
    listener's default chain. ``PERMISSIVE``: the mTLS chain (TLS offering a
    mesh ALPN, ``MESH_ALPN_MATCH``) and ``chain`` restricted to plaintext;
    other TLS falls through to the listener's passthrough default chain, to the
    app as sent. ``DISABLE``: ``chain`` unchanged.
    """
    if mode == "DISABLE":
        return (chain,)
    base = chain.match or FilterChainMatch()
    secure_match = dataclasses.replace(base, transport_protocol="tls")
    if mode == "PERMISSIVE":
        secure_match = dataclasses.replace(secure_match, application_protocols=MESH_ALPN_MATCH)
    secure = FilterChain(
        f"{chain.name}-mtls",
        _with_xfcc(chain.filter),
        secure_match,
        tls=mesh_downstream_tls(),
    )
    plain_match = dataclasses.replace(base, transport_protocol="raw_buffer")
    if mode == "PERMISSIVE":
        return (secure, dataclasses.replace(chain, match=plain_match))
    if not reject_plaintext:
        return (secure,)
    rejected = FilterChain(
        f"{chain.name}-plaintext-rejected",
        TcpProxy(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER),
        plain_match,
    )
    return (secure, rejected)


def inbound_passthrough_chains(
    mode: EffectiveMode,
) -> tuple[tuple[FilterChain, ...], FilterChain]:
    """For ``virtualInbound``: extra chains and the default chain for ports no
    service declares, by the workload's mode. mTLS is terminated and the
    connection forwarded to its original port; under ``STRICT`` plaintext goes
    to ``BlackHoleCluster``."""
    passthrough = TcpProxy(INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER)
    plain = FilterChain(INBOUND_PASSTHROUGH_CLUSTER, passthrough)
    if mode == "DISABLE":
        return (), plain
    if mode == "PERMISSIVE":
        secure = FilterChain(
            f"{INBOUND_PASSTHROUGH_CLUSTER}-mtls",
            passthrough,
            FilterChainMatch(transport_protocol="tls", application_protocols=MESH_ALPN_MATCH),
            tls=mesh_downstream_tls(),
        )
        return (secure,), plain
    secure = FilterChain(
        f"{INBOUND_PASSTHROUGH_CLUSTER}-mtls",
        passthrough,
        FilterChainMatch(transport_protocol="tls"),
        tls=mesh_downstream_tls(),
    )
    return (secure,), FilterChain(
        f"{INBOUND_PASSTHROUGH_CLUSTER}-plaintext-rejected",
        TcpProxy(BLACKHOLE_CLUSTER, BLACKHOLE_CLUSTER),
    )
