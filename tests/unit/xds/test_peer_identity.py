"""Binding an ADS node to its client certificate: ``authorize_node`` and the auth context."""

from __future__ import annotations

from pilotfish.xds.server.peer_identity import PeerInfo, authorize_node, peer_from_auth_context
from pki import TestCa

BOOKINFO = "spiffe://cluster.local/ns/default/sa/bookinfo"


def _leaf_pem(*uris: str) -> bytes:
    return TestCa().issue("workload", uris=uris).cert_pem.encode()


def _ssl_context(pem: bytes | None) -> dict[str, list[bytes]]:
    auth = {"transport_security_type": [b"ssl"]}
    return auth | ({"x509_pem_cert": [pem]} if pem is not None else {})


def test_the_verified_leaf_gives_the_identity() -> None:
    peer = peer_from_auth_context(_ssl_context(_leaf_pem(BOOKINFO)))
    assert peer.certificate is not None and peer.uri_sans == (BOOKINFO,)
    meta = {"NAMESPACE": "default", "SERVICE_ACCOUNT": "bookinfo"}
    assert authorize_node(peer, meta, "cluster.local") is None


def test_a_node_claiming_another_identity_is_refused() -> None:
    peer = peer_from_auth_context(_ssl_context(_leaf_pem(BOOKINFO)))
    problem = authorize_node(peer, {"NAMESPACE": "default"}, "cluster.local")
    assert problem is not None and "sa/default" in problem and "sa/bookinfo" in problem
    other_domain = authorize_node(
        peer, {"NAMESPACE": "default", "SERVICE_ACCOUNT": "bookinfo"}, "example.org"
    )
    assert other_domain is not None


def test_no_certificate_or_no_tls_is_refused() -> None:
    plaintext = {"transport_security_type": [b"insecure"], "x509_pem_cert": [_leaf_pem(BOOKINFO)]}
    for auth in (_ssl_context(None), plaintext, {}):
        peer = peer_from_auth_context(auth)
        assert peer == PeerInfo(None)
        problem = authorize_node(peer, {"NAMESPACE": "default"}, "cluster.local")
        assert problem is not None and "client certificate" in problem
