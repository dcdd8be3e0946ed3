"""Who is on the other end of an xDS call on the mTLS port, and may it act as its node.

Theory of operation
-------------------
gRPC's own TLS (``tls.mtls_server_credentials``) refuses, during the
handshake, every client that does not present a certificate chaining to the
mesh root and valid now. So by the time a handler runs, the call's
``context.auth_context()`` describes a verified client: grpc-python 1.85
exposes the leaf as ``x509_pem_cert`` (and its SANs as
``x509_subject_alternative_name``, its SPIFFE id as ``peer_spiffe_id``), and
``transport_security_type`` is ``ssl``. ``peer_from_auth_context`` reads the
leaf PEM and takes its URI SANs with ``cryptography``, so the identity is
exactly what the certificate says, not a string gRPC flattened.

A call without an ``ssl`` transport or without a certificate gives a
``PeerInfo`` with no certificate, which ``authorize_node`` refuses: a
misconfigured port fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from pilotfish.ca.identity import uri_sans
from pilotfish.model.ambient import NODE_PROXY_NAMESPACE, NODE_PROXY_SERVICE_ACCOUNT
from pilotfish.model.proxy_view import META_NAMESPACE, META_ROLE, META_SERVICE_ACCOUNT

__all__ = ["PeerInfo", "authorize_node", "peer_from_auth_context"]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A TLS client as the handshake verified it. ``certificate`` is None when the
    client sent none."""

    certificate: x509.Certificate | None
    uri_sans: tuple[str, ...] = ()

    @classmethod
    def from_der(cls, der: bytes | None) -> PeerInfo:
        if not der:
            return cls(None)
        return cls._of(x509.load_der_x509_certificate(der))

    @classmethod
    def from_pem(cls, pem: bytes | None) -> PeerInfo:
        if not pem:
            return cls(None)
        return cls._of(x509.load_pem_x509_certificate(pem))

    @classmethod
    def _of(cls, cert: x509.Certificate) -> PeerInfo:
        return cls(cert, tuple(uri_sans(cert)))


def peer_from_auth_context(auth: Mapping[str, Any]) -> PeerInfo:
    """The verified client of a call, from ``context.auth_context()``."""
    if b"ssl" not in auth.get("transport_security_type", ()):
        return PeerInfo(None)
    certs = auth.get("x509_pem_cert") or ()
    return PeerInfo.from_pem(certs[0]) if certs else PeerInfo(None)


def authorize_node(
    peer: PeerInfo | None, metadata: Mapping[str, Any], trust_domain: str
) -> str | None:
    """Why an ADS stream from ``peer`` may not act as the node in ``metadata``, or None.

    The node's NAMESPACE and SERVICE_ACCOUNT (default ``default``) must equal
    the identity in the client certificate's URI SAN.
    """
    if peer is None or peer.certificate is None:
        return "xDS on the mTLS port requires a client certificate issued by the mesh CA"
    namespace = str(metadata.get(META_NAMESPACE, "") or "")
    account = str(metadata.get(META_SERVICE_ACCOUNT, "") or "default")
    if str(metadata.get(META_ROLE, "")) == "node-proxy" and (
        namespace != NODE_PROXY_NAMESPACE or account != NODE_PROXY_SERVICE_ACCOUNT
    ):
        # A node proxy's configuration names every ambient pod of its host: only
        # the node proxy's own identity may ask for it.
        return f"only {NODE_PROXY_NAMESPACE}/{NODE_PROXY_SERVICE_ACCOUNT} may act as a node proxy"
    expected = f"spiffe://{trust_domain}/ns/{namespace}/sa/{account}"
    if expected not in peer.uri_sans:
        presented = ", ".join(peer.uri_sans) or "no URI SAN"
        return (
            f"client certificate identity ({presented}) does not match the node's "
            f"identity {expected} (metadata {META_NAMESPACE}/{META_SERVICE_ACCOUNT})"
        )
    return None
