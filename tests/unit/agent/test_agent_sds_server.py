"""The SDS server over a real Unix socket with a real gRPC client (as Envoy talks to it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from pilotfish.agent.identity import WorkloadCertificate
from pilotfish.agent.sds_server import SECRET_TYPE, SdsServer


def _cert(serial: int) -> WorkloadCertificate:
    return WorkloadCertificate(
        spiffe_id="spiffe://cluster.local/ns/a/sa/b",
        cert_chain_pem=f"CHAIN-{serial}\n",
        root_cert_pem="ROOT\n",
        serial=serial,
        not_before=0.0,
        not_after=100.0,
        issued_at=0.0,
        private_key_pem=f"KEY-{serial}".encode(),
    )


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths must stay under 108 bytes; pytest's tmp_path can be long.
    path = Path(tempfile.mkdtemp(prefix="pf-sds-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def server(short_dir: Path) -> AsyncIterator[SdsServer]:
    sds = SdsServer(short_dir / "sds.sock")
    sds.set_certificate(_cert(0x11))
    await sds.start()
    try:
        yield sds
    finally:
        await sds.close()


def _secrets(response: Any) -> dict[str, Any]:
    assert response.type_url == SECRET_TYPE
    out: dict[str, Any] = {}
    for packed in response.resources:
        secret = secret_pb2.Secret()
        assert packed.Unpack(secret)
        out[secret.name] = secret
    return out


async def test_socket_is_0660_and_only_the_final_path_remains(
    server: SdsServer, short_dir: Path
) -> None:
    mode = os.stat(server.socket_path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert sorted(p.name for p in short_dir.iterdir()) == ["sds.sock"]


async def test_stream_serves_cert_and_root_then_pushes_rotation(server: SdsServer) -> None:
    async with grpc.aio.insecure_channel(f"unix:{server.socket_path}") as channel:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets()
        await call.write(discovery_pb2.DiscoveryRequest(resource_names=["default", "ROOTCA"]))
        first = await call.read()
        secrets = _secrets(first)
        assert first.version_info == "11"
        cert = secrets["default"].tls_certificate
        assert cert.certificate_chain.inline_bytes == b"CHAIN-17\n"
        assert cert.private_key.inline_bytes == b"KEY-17"
        assert secrets["ROOTCA"].validation_context.trusted_ca.inline_bytes == b"ROOT\n"
        assert not server.served("default")

        await call.write(
            discovery_pb2.DiscoveryRequest(
                resource_names=["default", "ROOTCA"],
                version_info=first.version_info,
                response_nonce=first.nonce,
            )
        )
        async with asyncio.timeout(5):
            await server.wait_acked("default")
        assert server.served("default") and server.acked("ROOTCA")

        server.set_certificate(_cert(0x22))
        pushed = await call.read()
        assert pushed.version_info == "22"
        assert pushed.nonce != first.nonce
        new = _secrets(pushed)
        assert new["default"].tls_certificate.private_key.inline_bytes == b"KEY-34"
        assert not server.acked("default")  # the new version is not ACKed yet
        assert server.served("default")  # but a certificate has been accepted before
        call.cancel()


async def test_nack_is_logged_and_not_acked(server: SdsServer, caplog: Any) -> None:
    async with grpc.aio.insecure_channel(f"unix:{server.socket_path}") as channel:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets()
        await call.write(discovery_pb2.DiscoveryRequest(resource_names=["default"]))
        first = await call.read()
        nack = discovery_pb2.DiscoveryRequest(
            resource_names=["default"], response_nonce=first.nonce
        )
        nack.error_detail.message = "bad certificate"
        await call.write(nack)
        # A later subscription change proves the NACK was processed in order.
        await call.write(
            discovery_pb2.DiscoveryRequest(
                resource_names=["default", "ROOTCA"], response_nonce=first.nonce
            )
        )
        more = await call.read()
        assert set(_secrets(more)) == {"default", "ROOTCA"}
        assert not server.served("default")
        assert "bad certificate" in caplog.text
        call.cancel()


async def test_fetch_secrets_answers_once(server: SdsServer) -> None:
    async with grpc.aio.insecure_channel(f"unix:{server.socket_path}") as channel:
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        response = await stub.FetchSecrets(
            discovery_pb2.DiscoveryRequest(resource_names=["ROOTCA"])
        )
        assert set(_secrets(response)) == {"ROOTCA"}
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=["nope"]))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_close_removes_the_socket(short_dir: Path) -> None:
    sds = SdsServer(short_dir / "sds.sock")
    await sds.start()
    assert (short_dir / "sds.sock").exists()
    await sds.close()
    assert not (short_dir / "sds.sock").exists()


def test_too_long_socket_path_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter --work-dir"):
        SdsServer(Path("/tmp") / ("x" * 120) / "sds.sock")
