"""The CA client over real gRPC + TLS against an in-test CA speaking the wire contract."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from agent_test_ca import FakeMeshCa
from cryptography import x509

from pilotfish.agent.backoff import BackoffPolicy
from pilotfish.agent.ca_client import CaAuthError, CaClient, CaError
from pilotfish.agent.identity import IdentityError, WorkloadKey, build_csr
from pilotfish.agent.rotation import CertificateIssuer

IDENTITY = "spiffe://cluster.local/ns/bookinfo/sa/reviews"
FAST = BackoffPolicy(initial=0.01, factor=2.0, maximum=0.05)


@pytest.fixture
async def ca() -> AsyncIterator[FakeMeshCa]:
    fake = FakeMeshCa(tokens={"tok-reviews": ("bookinfo", "reviews")})
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca-token"
    path.write_text("tok-reviews\n")
    path.chmod(0o600)
    return path


async def _client(ca: FakeMeshCa, token_file: Path, **kwargs: object) -> CaClient:
    return CaClient(
        f"127.0.0.1:{ca.port}",
        ca.root_pem.encode(),
        token_file,
        timeout=5.0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_issue_sends_csr_token_and_ttl_and_checks_the_answer(
    ca: FakeMeshCa, token_file: Path
) -> None:
    client = await _client(ca, token_file)
    try:
        cert = await CertificateIssuer(client, IDENTITY, ttl_seconds=120, retry=FAST).issue()
    finally:
        await client.close()
    assert [c.token for c in ca.calls] == ["tok-reviews"]
    assert ca.calls[0].ttl_seconds == 120
    assert cert.spiffe_id == IDENTITY
    assert cert.root_cert_pem == ca.root_pem
    assert cert.lifetime == pytest.approx(120, abs=2)
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pem.encode())
    assert leaf.serial_number == cert.serial


async def test_unknown_token_is_a_clear_auth_error_without_retry(
    ca: FakeMeshCa, tmp_path: Path
) -> None:
    bad = tmp_path / "token"
    bad.write_text("nope")
    client = await _client(ca, bad)
    try:
        with pytest.raises(CaAuthError, match=r"UNAUTHENTICATED.*unknown token") as info:
            await CertificateIssuer(client, IDENTITY, retry=FAST).issue()
    finally:
        await client.close()
    assert info.value.code == "UNAUTHENTICATED"
    assert len(ca.calls) == 1
    assert "nope" not in str(info.value)


async def test_identity_not_the_tokens_is_permission_denied(
    ca: FakeMeshCa, token_file: Path
) -> None:
    client = await _client(ca, token_file)
    try:
        with pytest.raises(CaAuthError, match="PERMISSION_DENIED"):
            await CertificateIssuer(
                client, "spiffe://cluster.local/ns/bookinfo/sa/ratings", retry=FAST
            ).issue()
    finally:
        await client.close()


async def test_unavailable_is_retried_until_the_ca_answers(
    ca: FakeMeshCa, token_file: Path
) -> None:
    ca.fail_with = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    client = await _client(ca, token_file)
    try:
        cert = await CertificateIssuer(client, IDENTITY, retry=FAST).issue()
    finally:
        await client.close()
    assert len(ca.calls) == 3
    assert cert.spiffe_id == IDENTITY


async def test_invalid_argument_is_not_retried(ca: FakeMeshCa, token_file: Path) -> None:
    ca.fail_with = [grpc.StatusCode.INVALID_ARGUMENT]
    client = await _client(ca, token_file)
    try:
        with pytest.raises(CaError, match="INVALID_ARGUMENT") as info:
            await CertificateIssuer(client, IDENTITY, retry=FAST).issue()
    finally:
        await client.close()
    assert not info.value.retryable
    assert len(ca.calls) == 1


async def test_server_without_the_control_plane_name_is_not_trusted(
    ca: FakeMeshCa, token_file: Path
) -> None:
    client = await _client(ca, token_file, server_name="someone-else")
    try:
        with pytest.raises(CaError, match="UNAVAILABLE"):
            await client.create_certificate(build_csr(WorkloadKey.generate(), IDENTITY))
    finally:
        await client.close()
    assert ca.calls == []


async def test_token_file_is_read_on_every_request(ca: FakeMeshCa, token_file: Path) -> None:
    client = await _client(ca, token_file)
    try:
        await client.create_certificate(build_csr(WorkloadKey.generate(), IDENTITY))
        token_file.write_text("rotated-token")
        with pytest.raises(CaAuthError):
            await client.create_certificate(build_csr(WorkloadKey.generate(), IDENTITY))
        token_file.unlink()
        with pytest.raises(CaError, match="cannot read the CA token file") as info:
            await client.create_certificate(build_csr(WorkloadKey.generate(), IDENTITY))
        assert info.value.retryable
    finally:
        await client.close()
    assert [c.token for c in ca.calls] == ["tok-reviews", "rotated-token"]


async def test_a_certificate_for_another_key_is_rejected_by_the_issuer(
    ca: FakeMeshCa, token_file: Path
) -> None:
    """The issuer checks the chain against its own key, whatever the CA says."""
    client = await _client(ca, token_file)
    original = client.create_certificate

    async def swap_csr(csr_pem: str, ttl_seconds: int | None = None) -> object:
        return await original(build_csr(WorkloadKey.generate(), IDENTITY), ttl_seconds)

    client.create_certificate = swap_csr  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(IdentityError, match="not for the key"):
            await CertificateIssuer(client, IDENTITY, retry=FAST).issue()
    finally:
        await client.close()


def test_method_name_matches_the_ca_contract() -> None:
    from pilotfish.agent.ca_client import CA_METHOD, CA_SERVER_NAME
    from pilotfish.ca.protocol import CA_METHOD as CONTRACT_METHOD

    assert CA_METHOD == CONTRACT_METHOD
    assert CA_SERVER_NAME == "pilotfish-control-plane"
