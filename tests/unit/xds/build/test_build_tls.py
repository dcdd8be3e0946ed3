"""TLS builders: upstream/downstream contexts, SDS configs, transport socket
matches, endpoint metadata, XFCC, require_tls, and key redaction."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import config_source_pb2
from envoy.config.core.v3.config_source_pb2 import V3
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import json_format

from pilotfish import ir
from pilotfish.controlplane.http_api import decode_resource
from pilotfish.ir.dump import REDACTED, redact, to_plain
from pilotfish.xds.build import build_cluster, build_listener, pack
from pilotfish.xds.build.endpoints import build_lb_endpoint
from pilotfish.xds.build.network_filters import build_http_connection_manager
from pilotfish.xds.build.routes import build_virtual_host
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.build.tls import (
    SDS_CLUSTER,
    build_downstream_tls_context,
    build_upstream_tls_context,
)

MESH = ir.UpstreamTls(
    "ISTIO_MUTUAL",
    client_cert=ir.CertSource(sds="default"),
    trusted_ca=ir.CertSource(sds="ROOTCA"),
    sni="outbound_.9080_._.reviews.default.svc.cluster.local",
    alpn=("istio-peer-exchange", "istio"),
)


def test_sds_secret_config_points_at_the_agent_cluster() -> None:
    ctx = build_upstream_tls_context(MESH)
    (cert,) = ctx.common_tls_context.tls_certificate_sds_secret_configs
    assert cert.name == "default"
    source = cert.sds_config
    assert source.resource_api_version == config_source_pb2.V3
    api = source.api_config_source
    assert api.api_type == config_source_pb2.ApiConfigSource.GRPC
    assert api.transport_api_version == config_source_pb2.V3
    assert api.grpc_services[0].envoy_grpc.cluster_name == SDS_CLUSTER == "sds-grpc"
    assert ctx.common_tls_context.validation_context_sds_secret_config.name == "ROOTCA"
    assert list(ctx.common_tls_context.alpn_protocols) == ["istio-peer-exchange", "istio"]
    assert ctx.sni == MESH.sni


def test_sans_with_sds_ca_use_a_combined_validation_context() -> None:
    tls = ir.UpstreamTls(
        "ISTIO_MUTUAL",
        client_cert=ir.CertSource(sds="default"),
        trusted_ca=ir.CertSource(sds="ROOTCA"),
        subject_alt_names=("spiffe://cluster.local/ns/a/sa/b", "api.example.com"),
    )
    combined = build_upstream_tls_context(tls).common_tls_context.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "ROOTCA"
    sans = combined.default_validation_context.match_typed_subject_alt_names
    assert [(m.san_type, m.matcher.exact) for m in sans] == [
        (common_pb2.SubjectAltNameMatcher.URI, "spiffe://cluster.local/ns/a/sa/b"),
        (common_pb2.SubjectAltNameMatcher.DNS, "api.example.com"),
    ]


def test_files_credentials_and_insecure_skip_verify() -> None:
    tls = ir.UpstreamTls(
        "MUTUAL",
        client_cert=ir.CertSource(cert_file="/c.pem", key_file="/k.pem"),
        trusted_ca=ir.CertSource(credential="kubernetes://ns/creds-cacert"),
    )
    common = build_upstream_tls_context(tls).common_tls_context
    assert common.tls_certificates[0].certificate_chain.filename == "/c.pem"
    assert common.tls_certificates[0].private_key.filename == "/k.pem"
    ca = common.validation_context_sds_secret_config
    assert ca.name == "kubernetes://ns/creds-cacert"
    assert ca.sds_config.HasField("ads") and ca.sds_config.resource_api_version == V3
    skip = ir.UpstreamTls(
        "SIMPLE", trusted_ca=ir.CertSource(cert_file="/ca"), insecure_skip_verify=True
    )
    assert not build_upstream_tls_context(skip).common_tls_context.HasField("validation_context")


def test_credential_secrets_become_sds_resources() -> None:
    ca = build_secret(ir.CredentialSecret("kubernetes://ns/c-cacert", ca_pem="CA PEM"))
    assert ca.name == "kubernetes://ns/c-cacert"
    assert ca.validation_context.trusted_ca.inline_bytes == b"CA PEM"
    assert not ca.HasField("tls_certificate")
    cert = build_secret(ir.CredentialSecret("kubernetes://ns/c", cert_pem="C", key_pem="K"))
    assert cert.tls_certificate.private_key.inline_bytes == b"K"
    with pytest.raises(ValueError, match="kubernetes://ns/x"):
        build_secret(ir.CredentialSecret("kubernetes://ns/x", cert_pem="C"))


def test_credential_names_carry_their_namespace() -> None:
    assert ir.credential_name("istio-system", "gw") == "kubernetes://istio-system/gw"
    assert ir.credential_ca_name("istio-system", "gw") == "kubernetes://istio-system/gw-cacert"
    assert ir.credential_namespace("kubernetes://istio-system/gw-cacert") == "istio-system"
    for bad in ("kubernetes://gw", "kubernetes:///gw", "kubernetes://a/b/c", "default", ""):
        assert ir.credential_namespace(bad) is None, bad


def test_unusable_certificate_source_is_an_error() -> None:
    with pytest.raises(ValueError):
        build_upstream_tls_context(
            ir.UpstreamTls("MUTUAL", client_cert=ir.CertSource(cert_file="/c"))
        )


def test_downstream_requires_client_certificate_and_sets_versions() -> None:
    tls = ir.DownstreamTls(
        server_cert=ir.CertSource(credential=ir.credential_name("ns", "c")),
        trusted_ca=ir.CertSource(cert_file="/ca.pem"),
        require_client_cert=True,
        alpn=("h2", "http/1.1"),
        min_version="TLSv1_2",
    )
    ctx = build_downstream_tls_context(tls)
    assert ctx.require_client_certificate.value
    params = ctx.common_tls_context.tls_params
    assert params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_2
    (cert,) = ctx.common_tls_context.tls_certificate_sds_secret_configs
    assert cert.name == "kubernetes://ns/c" and cert.sds_config.HasField("ads")
    assert not ctx.common_tls_context.tls_certificates
    assert ctx.common_tls_context.validation_context.trusted_ca.filename == "/ca.pem"


def test_auto_mtls_cluster_has_transport_socket_matches() -> None:
    cluster = build_cluster(ir.Cluster("outbound|9080||r", "EDS", auto_mtls=MESH))
    first, second = cluster.transport_socket_matches
    assert first.name == "tlsMode-istio"
    assert dict(first.match) == {"tlsMode": "istio"}
    assert first.transport_socket.name == "envoy.transport_sockets.tls"
    ctx = tls_pb2.UpstreamTlsContext()
    first.transport_socket.typed_config.Unpack(ctx)
    assert ctx.sni == MESH.sni
    assert second.name == "tlsMode-disabled" and not dict(second.match)
    assert second.transport_socket.name == "envoy.transport_sockets.raw_buffer"
    assert not cluster.HasField("transport_socket")


def test_cluster_tls_wins_over_auto_mtls() -> None:
    cluster = build_cluster(ir.Cluster("c", "EDS", tls=MESH, auto_mtls=MESH))
    assert cluster.HasField("transport_socket") and not cluster.transport_socket_matches


def test_endpoint_metadata_marks_mesh_endpoints_only() -> None:
    meshed = build_lb_endpoint(ir.Endpoint("10.0.0.1", 80, tls_mode="istio"))
    fields = meshed.metadata.filter_metadata["envoy.transport_socket_match"]
    assert dict(fields) == {"tlsMode": "istio"}
    assert not build_lb_endpoint(ir.Endpoint("10.0.0.2", 80)).HasField("metadata")


def _hcm(forward: bool) -> hcm_pb2.HttpConnectionManager:
    return build_http_connection_manager(
        ir.HttpConnectionManager("s", route_config_name="r", forward_client_cert=forward)
    )


def test_xfcc_is_sanitize_set_on_tls_chains_and_sanitize_otherwise() -> None:
    on = _hcm(True)
    assert on.forward_client_cert_details == hcm_pb2.HttpConnectionManager.SANITIZE_SET
    details = on.set_current_client_cert_details
    assert details.subject.value and details.uri and details.dns
    off = _hcm(False)
    assert off.forward_client_cert_details == hcm_pb2.HttpConnectionManager.SANITIZE
    assert not off.HasField("set_current_client_cert_details")


def test_tls_chain_gets_transport_socket_and_tls_inspector() -> None:
    tls = ir.DownstreamTls(server_cert=ir.CertSource(sds="default"))
    chain = ir.FilterChain(
        "c", ir.TcpProxy("s", "x"), ir.FilterChainMatch(transport_protocol="tls"), tls=tls
    )
    listener = build_listener(ir.Listener("l", "0.0.0.0", 443, (chain,)))
    assert listener.filter_chains[0].transport_socket.name == "envoy.transport_sockets.tls"
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    plain = build_listener(
        ir.Listener("l", "0.0.0.0", 80, (), ir.FilterChain("c", ir.TcpProxy("s", "x")))
    )
    assert not plain.listener_filters


def test_require_tls_redirects_all() -> None:
    vh = build_virtual_host(ir.VirtualHost("v", ("*",), (), require_tls=True))
    assert vh.require_tls == rc_pb2.VirtualHost.ALL
    assert (
        build_virtual_host(ir.VirtualHost("v", ("*",), ())).require_tls == rc_pb2.VirtualHost.NONE
    )


def test_redact_hides_keys_of_credential_secrets_in_ir_and_protos() -> None:
    secret = ir.CredentialSecret("kubernetes://ns/c", cert_pem="CERT", key_pem="SECRET-KEY")
    assert "SECRET-KEY" not in repr(secret)
    plain = redact(to_plain(secret))
    assert "SECRET-KEY" not in str(plain) and "CERT" in str(plain)
    proto = json_format.MessageToDict(build_secret(secret), preserving_proto_field_name=True)
    assert proto["tls_certificate"]["private_key"]["inline_bytes"]
    shown = redact(proto)
    assert shown["tls_certificate"]["private_key"] == {"inline_bytes": REDACTED}
    assert shown["tls_certificate"]["certificate_chain"] == {"inline_bytes": "Q0VSVA=="}
    # /debug/config_dump decodes resources through the same redaction.
    dumped = decode_resource(pack(build_secret(secret)))
    assert dumped["tls_certificate"]["private_key"] == {"inline_bytes": REDACTED}
    files = ir.CertSource(cert_file="/c", key_file="/k")
    assert redact(to_plain(files)) == {"cert_file": "/c", "key_file": "/k"}
