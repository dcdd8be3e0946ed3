"""Which credential secrets an ADS stream may receive.

Theory of operation
-------------------
Credential secrets (``credentialName`` certificates, type
``envoy.extensions.transport_sockets.tls.v3.Secret``) are named
``kubernetes://<namespace>/<name>[-cacert]`` (``pilotfish.ir.credential_name``),
so a name says whose Secret it is. A stream may receive a secret only when
its *verified* identity is in that namespace, as Istio allows a proxy to read
Secrets of its own namespace:

- On the mTLS port gRPC's TLS verified the client certificate against the
  mesh root; the namespace of its SPIFFE id is what the stream may read.
  (``authorize_node`` already bound the node's claimed namespace to it.)
- A CA bundle alone (``...-cacert``: a Secret's ``ca.crt``, or the CA a
  BackendTLSPolicy names) holds only public certificates, which any verified
  identity may receive, whatever its namespace: a gateway validating a
  backend against a policy's CA need not live in the policy's namespace.
- The plain-text port has no identity: it never gets Secret contents. A
  gateway or sidecar there that needs one keeps waiting for it: Envoy keeps
  the listener (or cluster) warming until its initial fetch timeout and then
  refuses TLS on it for lack of a certificate, so it fails closed. The
  ``plaintext_secrets`` development opt-in trusts the node's *claimed*
  namespace instead; it must never be used where untrusted processes can
  reach the port.

Refusals are decided here, without I/O; the server counts them
(``pilotfish_xds_secret_denied_total{reason}``), logs each once per stream
and shows them in ``/debug/syncz``. Only names are ever reported.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pilotfish.ca.identity import SpiffeId
from pilotfish.ir import credential_namespace
from pilotfish.ir.security import CA_SUFFIX
from pilotfish.model.proxy_view import META_NAMESPACE
from pilotfish.xds.server.peer_identity import PeerInfo
from pilotfish.xds.types import SECRET_TYPE, ResourceSet

__all__ = ["DENIAL_TEXT", "DenyReason", "SecretAccess", "authorized_sets"]


class DenyReason(enum.Enum):
    """Why a stream may not receive a secret (the metric's ``reason`` label)."""

    PLAINTEXT = "plaintext"  # the stream has no verified identity
    NAMESPACE = "namespace"  # the verified identity is in another namespace
    NAME = "name"  # not a credential name this server serves


@dataclass(frozen=True, slots=True)
class SecretAccess:
    """The namespaces whose Secrets one stream may receive.

    ``identity`` is the verified SPIFFE id ("" without one); ``namespaces`` is
    empty on the plain-text port unless plaintext secrets were enabled.
    """

    namespaces: frozenset[str] = frozenset()
    identity: str = ""

    @classmethod
    def verified(cls, peer: PeerInfo | None, trust_domain: str) -> SecretAccess:
        """Access from a client certificate the mTLS handshake verified."""
        if peer is None or peer.certificate is None:
            return cls()
        namespaces: set[str] = set()
        identity = ""
        for uri in peer.uri_sans:
            try:
                spiffe = SpiffeId.parse(uri)
            except ValueError:
                continue
            if spiffe.trust_domain == trust_domain:
                namespaces.add(spiffe.namespace)
                identity = identity or uri
        return cls(frozenset(namespaces), identity)

    @classmethod
    def plaintext(cls, metadata: Mapping[str, Any], *, allow: bool) -> SecretAccess:
        """Access of a plain-text stream: none, or (``allow``, development only)
        the node's claimed namespace."""
        namespace = str(metadata.get(META_NAMESPACE, "") or "")
        if not allow or not namespace:
            return cls()
        return cls(frozenset({namespace}))

    def denial(self, name: str) -> DenyReason | None:
        """Why ``name`` may not be sent on this stream, or None if it may."""
        namespace = credential_namespace(name)
        if namespace is None:
            return DenyReason.NAME
        if namespace in self.namespaces:
            return None
        if self.identity and name.endswith(CA_SUFFIX):
            return None  # public certificates only: any verified proxy may have them
        return DenyReason.NAMESPACE if self.identity else DenyReason.PLAINTEXT

    def denied(self, names: Iterable[str]) -> dict[str, DenyReason]:
        """The names of ``names`` this stream may not receive, with the reason."""
        out: dict[str, DenyReason] = {}
        for name in names:
            reason = self.denial(name)
            if reason is not None:
                out[name] = reason
        return out

    def filter(self, secrets: ResourceSet) -> ResourceSet:
        """``secrets`` restricted to what this stream may receive (the same object
        when nothing is withheld, as for a gateway reading its own namespace)."""
        resources = secrets.resources
        if not resources:
            return secrets
        allowed = {n: b for n, b in resources.items() if self.denial(n) is None}
        if len(allowed) == len(resources):
            return secrets
        return ResourceSet(secrets.type_url, allowed)


#: Why a secret was refused, as the server logs it (by ``DenyReason`` value).
DENIAL_TEXT = {
    "plaintext": "the plain-text xDS port has no verified identity (use the mTLS port)",
    "namespace": "its verified identity {identity} is in another namespace than the Secret",
    "name": "not a credential this control plane serves",
}


def authorized_sets(
    access: SecretAccess, sets: Mapping[str, ResourceSet]
) -> Mapping[str, ResourceSet]:
    """``sets`` with the credential secrets restricted to what ``access`` allows."""
    secrets = sets.get(SECRET_TYPE)
    if secrets is None or not secrets.resources:
        return sets
    allowed = access.filter(secrets)
    if allowed is secrets:
        return sets
    return {**sets, SECRET_TYPE: allowed}
