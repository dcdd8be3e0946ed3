"""Credential secrets on the ADS stream: only to a stream entitled to the Secret's namespace.

The sans-IO rules (``SecretAccess``) with certificates parsed like the TLS
front does, and the real gRPC server on its plain-text port: no secret there
by default (counted, listed in status), the claimed namespace's secrets with
the development opt-in. The secure port, where identities are verified, is
exercised with a real Envoy gateway in ``tests/integration/test_gateway_sds.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import pytest
from ads_client import AdsClient, resource_names
from ads_helpers import cla, cluster, listener
from cryptography import x509
from prometheus_client import CollectorRegistry

from pilotfish.ir import CredentialSecret
from pilotfish.xds.build import pack
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.server import XdsServer
from pilotfish.xds.server.peer_identity import PeerInfo
from pilotfish.xds.server.secret_access import DenyReason, SecretAccess
from pilotfish.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    SECRET_TYPE,
    ResourceSet,
)
from pki import TestCa

GW_SECRET = "kubernetes://istio-system/gw-cert"
GW_CA = "kubernetes://istio-system/gw-cert-cacert"
OTHER = "kubernetes://default/app-cert"
PROBES = {f"probe{i}": cla(f"probe{i}", 7000 + i) for i in range(1, 5)}


def _peer(*uris: str) -> PeerInfo:
    leaf = TestCa().issue("workload")
    return PeerInfo(x509.load_pem_x509_certificate(leaf.cert_pem.encode()), uris)


def _secrets(*names: str) -> ResourceSet:
    return ResourceSet(
        SECRET_TYPE,
        {n: pack(build_secret(CredentialSecret(n, cert_pem="C", key_pem="K"))) for n in names},
    )


def test_verified_identity_reads_its_own_namespace_only() -> None:
    access = SecretAccess.verified(
        _peer("spiffe://cluster.local/ns/istio-system/sa/gw"), "cluster.local"
    )
    assert access.identity == "spiffe://cluster.local/ns/istio-system/sa/gw"
    assert access.denial(GW_SECRET) is None and access.denial(GW_CA) is None
    assert access.denial(OTHER) is DenyReason.NAMESPACE
    assert access.denial("kubernetes://gw-cert") is DenyReason.NAME
    assert access.denial("default") is DenyReason.NAME
    both = _secrets(GW_SECRET, GW_CA)
    assert access.filter(both) is both  # nothing withheld: the shared set itself
    mixed = access.filter(_secrets(GW_SECRET, OTHER))
    assert list(mixed.resources) == [GW_SECRET]


def test_ca_bundles_are_public_to_verified_identities_only() -> None:
    """A CA alone (``-cacert``) may go to a verified proxy of any namespace (a gateway
    checking a backend against a BackendTLSPolicy's CA elsewhere); keys never do, and
    the plain-text port gets neither."""
    access = SecretAccess.verified(
        _peer("spiffe://cluster.local/ns/default/sa/gw"), "cluster.local"
    )
    assert access.denial(GW_CA) is None
    assert access.denial(GW_SECRET) is DenyReason.NAMESPACE
    assert SecretAccess().denial(GW_CA) is DenyReason.PLAINTEXT
    assert SecretAccess.plaintext({"NAMESPACE": "default"}, allow=True).denial(GW_CA) is (
        DenyReason.PLAINTEXT
    )


def test_foreign_trust_domains_and_missing_certificates_read_nothing() -> None:
    evil = _peer("spiffe://evil.test/ns/istio-system/sa/gw")
    foreign = SecretAccess.verified(evil, "cluster.local")
    assert foreign.namespaces == frozenset()
    assert SecretAccess.verified(None, "cluster.local") == SecretAccess()
    assert SecretAccess.verified(PeerInfo(None), "cluster.local") == SecretAccess()


def test_plaintext_reads_nothing_unless_allowed() -> None:
    meta = {"NAMESPACE": "istio-system"}
    closed = SecretAccess.plaintext(meta, allow=False)
    assert closed.denied([GW_SECRET, OTHER]) == {
        GW_SECRET: DenyReason.PLAINTEXT,
        OTHER: DenyReason.PLAINTEXT,
    }
    assert not closed.filter(_secrets(GW_SECRET)).resources
    opened = SecretAccess.plaintext(meta, allow=True)
    assert opened.denied([GW_SECRET, OTHER]) == {OTHER: DenyReason.PLAINTEXT}


# -- the gRPC server, plain-text port ---------------------------------------------------


class GatewayGenerator:
    """Every node gets one listener, one cluster and the gateway's two secrets."""

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        return node_id

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        return {
            CLUSTER_TYPE: ResourceSet(CLUSTER_TYPE, {"a": cluster("a")}),
            ENDPOINT_TYPE: ResourceSet(ENDPOINT_TYPE, {"a": cla("a"), **PROBES}),
            LISTENER_TYPE: ResourceSet(LISTENER_TYPE, {"l1": listener("l1")}),
            SECRET_TYPE: _secrets(GW_SECRET, GW_CA),
        }


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


async def _server(registry: CollectorRegistry, *, plaintext_secrets: bool) -> XdsServer:
    srv = XdsServer(GatewayGenerator(), registry=registry, plaintext_secrets=plaintext_secrets)
    srv.port = await srv.start()  # type: ignore[attr-defined]
    return srv


@pytest.fixture
async def closed(registry: CollectorRegistry) -> AsyncIterator[tuple[XdsServer, grpc.aio.Channel]]:
    srv = await _server(registry, plaintext_secrets=False)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:  # type: ignore[attr-defined]
            yield srv, ch
    finally:
        await srv.close(grace=0)


@pytest.fixture
async def opened(registry: CollectorRegistry) -> AsyncIterator[tuple[XdsServer, grpc.aio.Channel]]:
    srv = await _server(registry, plaintext_secrets=True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:  # type: ignore[attr-defined]
            yield srv, ch
    finally:
        await srv.close(grace=0)


def _denied(registry: CollectorRegistry, reason: str) -> float:
    return registry.get_sample_value("pilotfish_xds_secret_denied_total", {"reason": reason}) or 0


GATEWAY = {"NAMESPACE": "istio-system"}


async def test_plaintext_port_sends_no_secret_and_counts_the_refusal(
    closed: tuple[XdsServer, grpc.aio.Channel], registry: CollectorRegistry
) -> None:
    server, channel = closed
    client = AdsClient(channel, "gw.istio-system", GATEWAY)
    await client.fetch(LISTENER_TYPE)
    await client.request(SECRET_TYPE, (GW_SECRET, GW_CA))
    # The server answers requests in order: had it planned a secret, the probe's
    # EDS response would not come first.
    await client.probe()
    assert _denied(registry, "plaintext") == 2
    # Envoy repeats its full subscription in later requests: counted once per name.
    await client.request(SECRET_TYPE, (GW_SECRET, GW_CA))
    await client.probe()
    assert _denied(registry, "plaintext") == 2
    (status,) = server.status()
    assert status.identity == ""
    assert status.secrets_denied == {GW_SECRET: "plaintext", GW_CA: "plaintext"}
    assert status.types[SECRET_TYPE].subscribed and not status.types[SECRET_TYPE].sent_version
    assert status.to_json()["secrets_denied"] == {GW_SECRET: "plaintext", GW_CA: "plaintext"}
    sent = server.sent("gw.istio-system")
    assert sent is not None and not sent[SECRET_TYPE].resources
    client.cancel()


async def test_proxies_without_secrets_show_no_sds_status(
    closed: tuple[XdsServer, grpc.aio.Channel],
) -> None:
    server, channel = closed
    client = AdsClient(channel, "web.default", {"NAMESPACE": "default"})
    await client.fetch(LISTENER_TYPE)
    assert SECRET_TYPE not in server.status()[0].types
    client.cancel()


async def test_plaintext_opt_in_serves_the_claimed_namespace_only(
    opened: tuple[XdsServer, grpc.aio.Channel], registry: CollectorRegistry
) -> None:
    _, channel = opened
    client = AdsClient(channel, "gw.istio-system", GATEWAY)
    response = await client.fetch(SECRET_TYPE, (GW_SECRET, GW_CA))
    assert sorted(resource_names(response)) == [GW_SECRET, GW_CA]
    client.cancel()
    other = AdsClient(channel, "web.default", {"NAMESPACE": "default"})
    await other.request(SECRET_TYPE, (GW_SECRET,))
    await other.probe()
    assert _denied(registry, "plaintext") == 1
    other.cancel()
