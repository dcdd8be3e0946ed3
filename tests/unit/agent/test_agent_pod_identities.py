"""A node proxy agent's certificates for its host's ambient pods, from the tokens the
runtime hands over, against an in-test CA speaking the wire contract (real gRPC, TLS)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_test_ca import FakeMeshCa

from pilotfish.agent.ca_client import CaClient
from pilotfish.agent.pod_identities import PodIdentities, parse_token_name
from pilotfish.agent.rotation import CertificateIssuer
from pilotfish.agent.sds_server import SdsServer
from polling import apoll

REVIEWS = "spiffe://cluster.local/ns/bookinfo/sa/reviews"
RATINGS = "spiffe://cluster.local/ns/bookinfo/sa/ratings"


@pytest.fixture
async def ca() -> AsyncIterator[FakeMeshCa]:
    fake = FakeMeshCa(
        tokens={
            "tok-node": ("istio-system", "node-proxy"),
            "tok-reviews-1": ("bookinfo", "reviews"),
            "tok-reviews-2": ("bookinfo", "reviews"),
        }
    )
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def _sds(ca: FakeMeshCa, tmp_path: Path) -> SdsServer:
    """An SDS server already serving the node proxy's own certificate."""
    token = tmp_path / "ca-token"
    token.write_text("tok-node")
    client = CaClient(f"127.0.0.1:{ca.port}", ca.root_pem.encode(), token)
    try:
        own = await CertificateIssuer(
            client, "spiffe://cluster.local/ns/istio-system/sa/node-proxy"
        ).issue()
    finally:
        await client.close()
    sds = SdsServer(tmp_path / "sds.sock")
    sds.set_certificate(own)
    return sds


def test_token_names_carry_namespace_service_account_and_pod() -> None:
    assert parse_token_name("bookinfo~reviews~reviews-v1-0.token") == (
        "bookinfo",
        "reviews",
        "reviews-v1-0",
    )
    assert parse_token_name("reviews.token") is None
    assert parse_token_name("a~b~c.tmp") is None


async def test_pods_identities_come_and_go_with_their_tokens(
    ca: FakeMeshCa, tmp_path: Path
) -> None:
    sds = await _sds(ca, tmp_path)
    tokens = tmp_path / "pod-tokens"
    tokens.mkdir()
    pods = PodIdentities(
        tokens,
        sds,
        ca_address=f"127.0.0.1:{ca.port}",
        root_pem=ca.root_pem.encode(),
        trust_domain="cluster.local",
    )
    try:
        (tokens / "bookinfo~reviews~reviews-v1-0.token").write_text("tok-reviews-1")
        (tokens / "bookinfo~reviews~reviews-v2-0.token").write_text("tok-reviews-2")
        pods.scan()
        await apoll(lambda: REVIEWS in sds.secret_names, "reviews served", deadline=10)
        assert pods.identities() == {REVIEWS}
        # One pod of the service account goes: the other still needs the identity.
        (tokens / "bookinfo~reviews~reviews-v1-0.token").unlink()
        pods.scan()
        assert REVIEWS in sds.secret_names
        (tokens / "bookinfo~reviews~reviews-v2-0.token").unlink()
        pods.scan()
        assert REVIEWS not in sds.secret_names and pods.identities() == set()
        assert {"default", "ROOTCA"} <= sds.secret_names
    finally:
        await pods.close()


async def test_a_token_never_yields_another_identity(ca: FakeMeshCa, tmp_path: Path) -> None:
    sds = await _sds(ca, tmp_path)
    tokens = tmp_path / "pod-tokens"
    tokens.mkdir()
    pods = PodIdentities(
        tokens,
        sds,
        ca_address=f"127.0.0.1:{ca.port}",
        root_pem=ca.root_pem.encode(),
        trust_domain="cluster.local",
    )
    try:
        # A reviews token under a ratings name: the CA refuses the identity.
        (tokens / "bookinfo~ratings~ratings-v1-0.token").write_text("tok-reviews-1")
        pods.scan()
        name = "bookinfo~ratings~ratings-v1-0.token"
        await apoll(lambda: name in pods.refused, "the CA's refusal", deadline=10)
        assert RATINGS not in sds.secret_names and pods.identities() == set()
    finally:
        await pods.close()
