"""IR TLS settings -> Envoy TLS contexts and transport sockets.

Theory of operation. A ``CertSource`` names where key material lives:

- ``sds``: a secret the proxy's agent serves over SDS (``default``: the
  workload certificate chain and key, ``ROOTCA``: the mesh root). The SDS
  config points at the static cluster ``sds-grpc`` that the agent's bootstrap
  declares (a Unix socket), so secrets never travel over xDS;
- ``credential``: a ``credentialName`` Secret, fetched over the proxy's ADS
  stream (``sds_config: {ads: {}}``) from the control plane, which serves it
  only to a proxy whose verified identity is in the Secret's namespace. The
  listener or cluster carries only the name, so its bytes, and its version,
  do not change when the certificate rotates: Envoy swaps the secret in place
  without draining the listener;
- ``cert_file``/``key_file``: files on the proxy's host (DataSource filename).

No key material is ever inlined in a listener or cluster.

Server names to verify (``subject_alt_names``) are exact matches, typed as URI
SANs for SPIFFE ids and DNS SANs otherwise. When the trusted CA comes over SDS
and SANs must be checked too, Envoy needs a ``combined_validation_context``
(static SAN matchers + the SDS-fetched CA).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from pilotfish import ir
from pilotfish.xds.build._common import any_of

__all__ = [
    "RAW_BUFFER_TRANSPORT_SOCKET",
    "SDS_CLUSTER",
    "TLS_TRANSPORT_SOCKET",
    "ads_secret_config",
    "build_downstream_tls_context",
    "build_upstream_tls_context",
    "downstream_transport_socket",
    "raw_buffer_transport_socket",
    "sds_secret_config",
    "upstream_transport_socket",
]

SDS_CLUSTER = "sds-grpc"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER_TRANSPORT_SOCKET = "envoy.transport_sockets.raw_buffer"

_TLS_VERSIONS = {
    "": common_pb2.TlsParameters.TLS_AUTO,
    "TLS_AUTO": common_pb2.TlsParameters.TLS_AUTO,
    "TLSv1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSv1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSv1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSv1_3": common_pb2.TlsParameters.TLSv1_3,
}


def sds_secret_config(name: str) -> secret_pb2.SdsSecretConfig:
    """Secret ``name`` fetched from the agent over the ``sds-grpc`` cluster."""
    source = config_source_pb2.ConfigSource(
        api_config_source=config_source_pb2.ApiConfigSource(
            api_type=config_source_pb2.ApiConfigSource.GRPC,
            grpc_services=[
                grpc_service_pb2.GrpcService(
                    envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
                )
            ],
            transport_api_version=config_source_pb2.V3,
        ),
        resource_api_version=config_source_pb2.V3,
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def ads_secret_config(name: str) -> secret_pb2.SdsSecretConfig:
    """Secret ``name`` fetched from the control plane on the proxy's ADS stream."""
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )
    return secret_pb2.SdsSecretConfig(name=name, sds_config=source)


def _secret_config(cert: ir.CertSource) -> secret_pb2.SdsSecretConfig | None:
    if cert.sds:
        return sds_secret_config(cert.sds)
    if cert.credential:
        return ads_secret_config(cert.credential)
    return None


def _set_certificate(common: tls_pb2.CommonTlsContext, cert: ir.CertSource) -> None:
    """The proxy's own certificate chain and key."""
    secret = _secret_config(cert)
    if secret is not None:
        common.tls_certificate_sds_secret_configs.append(secret)
        return
    if not (cert.cert_file and cert.key_file):
        raise ValueError("a certificate source needs an SDS name, or a certificate and a key")
    common.tls_certificates.append(
        common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(filename=cert.cert_file),
            private_key=base_pb2.DataSource(filename=cert.key_file),
        )
    )


def _san_matcher(san: str) -> common_pb2.SubjectAltNameMatcher:
    san_type = (
        common_pb2.SubjectAltNameMatcher.URI
        if "://" in san
        else common_pb2.SubjectAltNameMatcher.DNS
    )
    return common_pb2.SubjectAltNameMatcher(
        san_type=san_type, matcher=string_pb2.StringMatcher(exact=san)
    )


def _set_validation(
    common: tls_pb2.CommonTlsContext,
    ca: ir.CertSource | None,
    sans: tuple[str, ...],
    accept_untrusted: bool = False,
) -> None:
    """Peer verification: the trusted CA and, if given, the accepted SANs.
    ``accept_untrusted`` still asks for (and verifies) the peer's certificate but
    lets a connection through when it does not verify (``ACCEPT_UNTRUSTED``)."""
    if ca is None:
        if sans:
            # SANs without a CA would be checked on an unverified chain: meaningless.
            raise ValueError("subject alt names need a trusted CA to be verified against")
        return
    matchers = [_san_matcher(s) for s in sans]
    trust = (
        common_pb2.CertificateValidationContext.ACCEPT_UNTRUSTED
        if accept_untrusted
        else common_pb2.CertificateValidationContext.VERIFY_TRUST_CHAIN
    )
    secret = _secret_config(ca)
    if secret is not None:
        if matchers or accept_untrusted:
            combined = common.combined_validation_context
            default = combined.default_validation_context
            default.match_typed_subject_alt_names.extend(matchers)
            default.trust_chain_verification = trust
            combined.validation_context_sds_secret_config.CopyFrom(secret)
        else:
            common.validation_context_sds_secret_config.CopyFrom(secret)
        return
    if not ca.cert_file:
        raise ValueError("a trusted CA needs an SDS name, a credential or a file")
    common.validation_context.CopyFrom(
        common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(filename=ca.cert_file),
            match_typed_subject_alt_names=matchers,
            trust_chain_verification=trust,
        )
    )


def build_upstream_tls_context(tls: ir.UpstreamTls) -> tls_pb2.UpstreamTlsContext:
    """The client-side TLS context of a cluster.

    ``insecure_skip_verify`` drops peer verification (no CA, no SANs).
    Raises ``ValueError`` for a certificate source that names nothing usable.
    """
    proto = tls_pb2.UpstreamTlsContext(sni=tls.sni)
    common = proto.common_tls_context
    common.alpn_protocols.extend(tls.alpn)
    if tls.client_cert is not None:
        _set_certificate(common, tls.client_cert)
    if not tls.insecure_skip_verify:
        _set_validation(common, tls.trusted_ca, tls.subject_alt_names)
    return proto


def build_downstream_tls_context(tls: ir.DownstreamTls) -> tls_pb2.DownstreamTlsContext:
    """The server-side TLS context of a filter chain.

    ``require_client_cert`` makes the handshake fail without a client
    certificate; ``trusted_ca`` verifies one when presented.
    """
    proto = tls_pb2.DownstreamTlsContext()
    if tls.require_client_cert:
        proto.require_client_certificate.CopyFrom(wrappers_pb2.BoolValue(value=True))
    common = proto.common_tls_context
    common.alpn_protocols.extend(tls.alpn)
    _set_certificate(common, tls.server_cert)
    _set_validation(common, tls.trusted_ca, tls.subject_alt_names, tls.accept_untrusted)
    if tls.min_version or tls.max_version:
        common.tls_params.tls_minimum_protocol_version = _TLS_VERSIONS[tls.min_version]
        common.tls_params.tls_maximum_protocol_version = _TLS_VERSIONS[tls.max_version]
    return proto


def upstream_transport_socket(tls: ir.UpstreamTls) -> base_pb2.TransportSocket:
    """``envoy.transport_sockets.tls`` wrapping the cluster's TLS context."""
    return base_pb2.TransportSocket(
        name=TLS_TRANSPORT_SOCKET, typed_config=any_of(build_upstream_tls_context(tls))
    )


def downstream_transport_socket(tls: ir.DownstreamTls) -> base_pb2.TransportSocket:
    """``envoy.transport_sockets.tls`` wrapping a filter chain's TLS context."""
    return base_pb2.TransportSocket(
        name=TLS_TRANSPORT_SOCKET, typed_config=any_of(build_downstream_tls_context(tls))
    )


def raw_buffer_transport_socket() -> base_pb2.TransportSocket:
    """Plaintext (``envoy.transport_sockets.raw_buffer``)."""
    return base_pb2.TransportSocket(
        name=RAW_BUFFER_TRANSPORT_SOCKET, typed_config=any_of(raw_buffer_pb2.RawBuffer())
    )
