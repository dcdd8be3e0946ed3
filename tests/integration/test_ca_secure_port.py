"""The control plane's secure ports over real TLS: the CA (server TLS) and xDS over mTLS.

A real ``ControlPlane`` with a CA directory in tmp; gRPC clients verify the
server with the mesh root and the ``pilotfish-control-plane`` name, as agents do.
The CA port asks for no client certificate; the xDS port refuses, at the
handshake, every client without a valid certificate from the mesh CA.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from pilotfish.ca import (
    CA_METHOD,
    CONTROL_PLANE_DNS_NAME,
    CertificateAuthority,
    CreateCertificateRequest,
    CreateCertificateResponse,
    SpiffeId,
)
from pilotfish.ca.authority import ROOT_CERT_FILE
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.xds.server import ADS_METHOD
from pilotfish.xds.types import CLUSTER_TYPE
from polling import apoll

BOOKINFO = SpiffeId("cluster.local", "default", "bookinfo")
TIMEOUT = 10.0


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, uri: str) -> str:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass
class Workload:
    key_pem: bytes
    chain_pem: bytes


@dataclass
class SecureCp:
    cp: ControlPlane
    root_pem: bytes

    @property
    def ca_target(self) -> str:
        return f"127.0.0.1:{self.cp.secure_port}"

    @property
    def xds_target(self) -> str:
        return f"127.0.0.1:{self.cp.xds_mtls_port}"

    def channel(
        self, client: Workload | None = None, target: str | None = None
    ) -> grpc.aio.Channel:
        """A channel to the CA port, or to ``target``; ``client`` is presented if given."""
        creds = (
            grpc.ssl_channel_credentials(self.root_pem, client.key_pem, client.chain_pem)
            if client is not None
            else grpc.ssl_channel_credentials(self.root_pem)
        )
        return grpc.aio.secure_channel(
            target or self.ca_target,
            creds,
            options=[("grpc.ssl_target_name_override", CONTROL_PLANE_DNS_NAME)],
        )

    def xds_channel(self, client: Workload | None = None) -> grpc.aio.Channel:
        return self.channel(client, self.xds_target)

    async def create_certificate(
        self, request: CreateCertificateRequest
    ) -> CreateCertificateResponse:
        async with self.channel() as channel:
            call = channel.unary_unary(
                CA_METHOD,
                request_serializer=CreateCertificateRequest.encode,
                response_deserializer=CreateCertificateResponse.decode,
            )
            response: CreateCertificateResponse = await call(request, timeout=TIMEOUT)
            return response

    async def workload(self, namespace: str, account: str) -> Workload:
        """A workload certificate obtained the way an agent gets one."""
        token = self.cp.ca.tokens.register(namespace, account, f"{account}.{namespace}")  # type: ignore[union-attr]
        key = ec.generate_private_key(ec.SECP256R1())
        uri = SpiffeId("cluster.local", namespace, account).uri
        response = await self.create_certificate(
            CreateCertificateRequest(csr=_csr(key, uri), token=token)
        )
        return Workload(_key_pem(key), "".join(response.cert_chain).encode("ascii"))

    def metric(self, name: str, **labels: str) -> float:
        value = self.cp.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value


@pytest.fixture
async def secure_cp(tmp_path: Path) -> AsyncIterator[SecureCp]:
    settings = ControlPlaneSettings(
        xds_port=0,
        http_port=0,
        secure_port=0,
        xds_mtls_port=0,
        ca_dir=str(tmp_path / "ca"),
        cert_ttl_seconds=7200,
    )
    cp = ControlPlane(settings)
    await cp.start()
    try:
        assert cp.ca is not None and cp.secure_port > 0 and cp.xds_mtls_port > 0
        assert cp.secure_port != cp.xds_mtls_port
        root = (tmp_path / "ca" / ROOT_CERT_FILE).read_bytes()
        assert root.decode() == cp.ca.root_pem
        yield SecureCp(cp, root)
    finally:
        await cp.close()


# -- CreateCertificate --------------------------------------------------------------------


async def test_issues_a_chain_that_verifies_against_the_root(secure_cp: SecureCp) -> None:
    ca = secure_cp.cp.ca
    assert ca is not None
    token = ca.tokens.register("default", "bookinfo", "productpage-1.default")
    key = ec.generate_private_key(ec.SECP256R1())
    response = await secure_cp.create_certificate(
        CreateCertificateRequest(csr=_csr(key, BOOKINFO.uri), token=token)
    )
    root = x509.load_pem_x509_certificate(secure_cp.root_pem)
    assert response.root_cert == secure_cp.root_pem.decode()
    leaf = x509.load_pem_x509_certificate(response.cert_chain[0].encode())
    leaf.verify_directly_issued_by(root)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [BOOKINFO.uri]
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert response.expires_at == int(leaf.not_valid_after_utc.timestamp())
    lifetime = leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(minutes=119) < lifetime <= datetime.timedelta(hours=2)

    assert secure_cp.metric("pilotfish_ca_certificates_issued_total") == 1
    [record] = ca.issued()
    assert record.pod == "productpage-1.default"
    assert record.spiffe_id == BOOKINFO.uri
    assert record.serial == format(leaf.serial_number, "x")


async def _expect_status(
    secure_cp: SecureCp, request: CreateCertificateRequest, code: grpc.StatusCode
) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await secure_cp.create_certificate(request)
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


async def test_unknown_token_is_unauthenticated(secure_cp: SecureCp) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for token in ("guessed", ""):
        await _expect_status(
            secure_cp,
            CreateCertificateRequest(csr=_csr(key, BOOKINFO.uri), token=token),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    rejected = secure_cp.metric(
        "pilotfish_ca_certificates_rejected_total", reason="unauthenticated"
    )
    assert rejected == 2
    assert secure_cp.metric("pilotfish_ca_certificates_issued_total") == 0


async def test_identity_mismatch_is_permission_denied(secure_cp: SecureCp) -> None:
    token = secure_cp.cp.ca.tokens.register("default", "reviews", "reviews-1.default")  # type: ignore[union-attr]
    key = ec.generate_private_key(ec.SECP256R1())
    details = await _expect_status(
        secure_cp,
        CreateCertificateRequest(csr=_csr(key, BOOKINFO.uri), token=token),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "sa/reviews" in details
    assert (
        secure_cp.metric("pilotfish_ca_certificates_rejected_total", reason="identity_mismatch")
        == 1
    )


async def test_weak_key_is_invalid_argument(secure_cp: SecureCp) -> None:
    token = secure_cp.cp.ca.tokens.register("default", "bookinfo", "p.default")  # type: ignore[union-attr]
    weak = rsa.generate_private_key(65537, 1024)
    details = await _expect_status(
        secure_cp,
        CreateCertificateRequest(csr=_csr(weak, BOOKINFO.uri), token=token),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "1024" in details
    assert secure_cp.metric("pilotfish_ca_certificates_rejected_total", reason="weak_key") == 1


async def test_malformed_request_is_invalid_argument(secure_cp: SecureCp) -> None:
    async with secure_cp.channel() as channel:
        call = channel.unary_unary(CA_METHOD)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"{not json", timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_ca_is_not_served_on_the_plain_port(secure_cp: SecureCp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure_cp.cp.xds_port}") as channel:
        call = channel.unary_unary(CA_METHOD)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"{}", timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- ADS on the TLS port ------------------------------------------------------------------


def _discovery_request(namespace: str, account: str) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(type_url=CLUSTER_TYPE)
    request.node.id = f"{account}-1.{namespace}"
    metadata = struct_pb2.Struct()
    metadata.update({"NAMESPACE": namespace, "SERVICE_ACCOUNT": account, "ROLE": "sidecar"})
    request.node.metadata.CopyFrom(metadata)
    return request


async def _first_cds(channel: grpc.aio.Channel, namespace: str, account: str) -> Any:
    call = channel.stream_stream(
        ADS_METHOD,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )()
    try:
        await call.write(_discovery_request(namespace, account))
        return await asyncio.wait_for(call.read(), TIMEOUT)
    finally:
        call.cancel()


async def _ads_refused(channel: grpc.aio.Channel, allowed: set[grpc.StatusCode]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _first_cds(channel, "default", "bookinfo")
    assert info.value.code() in allowed, (info.value.code(), info.value.details())
    return info.value.details() or ""


async def test_ads_with_matching_cert_is_served(secure_cp: SecureCp) -> None:
    workload = await secure_cp.workload("default", "bookinfo")
    async with secure_cp.xds_channel(workload) as channel:
        response = await _first_cds(channel, "default", "bookinfo")
    assert response.type_url == CLUSTER_TYPE
    assert response.nonce
    # The stream's verified identity is the certificate's (what SDS authorization uses).
    [status] = secure_cp.cp.xds.status()
    assert status.identity == BOOKINFO.uri


async def _refused_at_handshake(secure_cp: SecureCp, client: Workload | None) -> None:
    """ADS with ``client`` ends in UNAVAILABLE: the TLS handshake failed, so no stream
    (and no node metadata) ever reached the xDS server."""
    async with secure_cp.xds_channel(client) as channel:
        await _ads_refused(channel, {grpc.StatusCode.UNAVAILABLE})
    assert secure_cp.cp.xds.stream_count == 0
    assert secure_cp.cp.xds.status() == []


async def test_ads_without_client_cert_is_refused_at_handshake(secure_cp: SecureCp) -> None:
    await _refused_at_handshake(secure_cp, None)


async def test_ads_with_cert_of_another_identity_is_refused(secure_cp: SecureCp) -> None:
    workload = await secure_cp.workload("default", "reviews")
    async with secure_cp.xds_channel(workload) as channel:
        details = await _ads_refused(channel, {grpc.StatusCode.PERMISSION_DENIED})
    assert "sa/reviews" in details and "sa/bookinfo" in details
    assert secure_cp.cp.xds.stream_count == 0


async def test_ads_with_cert_from_a_foreign_ca_is_refused_at_handshake(
    secure_cp: SecureCp,
) -> None:
    foreign = CertificateAuthority.create_root("cluster.local")
    key = ec.generate_private_key(ec.SECP256R1())
    issued = foreign.sign_csr(_csr(key, BOOKINFO.uri), BOOKINFO)
    await _refused_at_handshake(
        secure_cp, Workload(_key_pem(key), "".join(issued.chain_pem).encode())
    )


async def test_ads_with_an_expired_mesh_cert_is_refused_at_handshake(
    secure_cp: SecureCp,
) -> None:
    ca = secure_cp.cp.ca
    assert ca is not None
    key = ec.generate_private_key(ec.SECP256R1())
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    issued = ca.authority.sign_csr(
        _csr(key, BOOKINFO.uri), BOOKINFO, datetime.timedelta(minutes=10), now=an_hour_ago
    )
    leaf = x509.load_pem_x509_certificate(issued.chain_pem[0].encode())
    assert leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC)
    await _refused_at_handshake(
        secure_cp, Workload(_key_pem(key), "".join(issued.chain_pem).encode())
    )


async def test_ads_is_not_served_on_the_ca_port(secure_cp: SecureCp) -> None:
    # Even with a valid certificate: the CA port never asks for one, so it has no
    # identity to bind a node to.
    workload = await secure_cp.workload("default", "bookinfo")
    async with secure_cp.channel(workload) as channel:
        assert await not_served(channel, ADS_METHOD, _discovery_request("default", "bookinfo"))
    assert secure_cp.cp.xds.stream_count == 0


async def not_served(channel: grpc.aio.Channel, method: str, request: Any) -> bool:
    """Whether the server answers ``method`` with UNIMPLEMENTED.

    Asked as one unary call: headers, message and half-close go in one batch. On a
    streaming call, a write can race the server's immediate UNIMPLEMENTED, and
    grpc-python then reports INTERNAL ("Failed execute_batch") instead.
    """
    call = channel.unary_unary(method, request_serializer=type(request).SerializeToString)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(request, timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, info.value.details()
    return True


async def test_ca_is_not_served_on_the_xds_port(secure_cp: SecureCp) -> None:
    workload = await secure_cp.workload("default", "bookinfo")
    async with secure_cp.xds_channel(workload) as channel:
        call = channel.unary_unary(CA_METHOD)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(b"{}", timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_plain_port_still_serves_without_identity(secure_cp: SecureCp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secure_cp.cp.xds_port}") as channel:
        response = await _first_cds(channel, "default", "bookinfo")
    assert response.type_url == CLUSTER_TYPE


# -- a real Envoy over mTLS -----------------------------------------------------------------


def _envoy_bootstrap(port: int, files: dict[str, Path]) -> dict[str, Any]:
    tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": CONTROL_PLANE_DNS_NAME,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(files["chain"])},
                        "private_key": {"filename": str(files["key"])},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": str(files["root"])},
                    "match_typed_subject_alt_names": [
                        {"san_type": "DNS", "matcher": {"exact": CONTROL_PLANE_DNS_NAME}}
                    ],
                },
            },
        },
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    return {
        "node": {
            "id": "bookinfo-1.default",
            "cluster": "bookinfo",
            "metadata": {"NAMESPACE": "default", "SERVICE_ACCOUNT": "bookinfo"},
        },
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "transport_socket": tls,
                }
            ]
        },
    }


def _cds_acked(cp: ControlPlane, proxy_id: str) -> bool:
    return any(
        t.type_url == CLUSTER_TYPE and t.acked_version != ""
        for status in cp.xds.status()
        if status.proxy_id == proxy_id
        for t in status.types.values()
    )


async def test_real_envoy_gets_config_over_mtls(secure_cp: SecureCp, tmp_path: Path) -> None:
    envoy = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
    if not Path(envoy).exists():
        pytest.skip("envoy binary not found")
    workload = await secure_cp.workload("default", "bookinfo")
    files = {
        "chain": tmp_path / "chain.pem",
        "key": tmp_path / "key.pem",
        "root": tmp_path / "root.pem",
    }
    files["chain"].write_bytes(workload.chain_pem)
    files["key"].write_bytes(workload.key_pem)
    files["key"].chmod(0o600)
    files["root"].write_bytes(secure_cp.root_pem)
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(_envoy_bootstrap(secure_cp.cp.xds_mtls_port, files)))
    log = tmp_path / "envoy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                envoy,
                "-c",
                str(config),
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--base-id-path",
                str(tmp_path / "base-id"),
                "--use-dynamic-base-id",
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def acked() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            return _cds_acked(secure_cp.cp, "bookinfo-1.default")

        await apoll(
            acked,
            "the agent's CDS ACK",
            30,
            context=lambda: log.read_text(errors="replace")[-3000:],
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
