"""Client TLS for the ADS simulator: channels that present a mesh certificate.

Theory of operation: the scale benchmark can measure xDS as ``pilotfish up``
serves it, over mTLS. Before the control plane starts, ``issue_client_tls``
creates the mesh CA's root in the CA directory the control plane will load
(``CertificateAuthority.load_or_create``) and issues one workload certificate
for the simulated proxies' identity (``spiffe://<trust domain>/ns/<namespace>/
sa/<account>``, the identity every ``sim_node`` claims), written as PEM files
to a directory. The simulator reads them back (``ClientTls.from_dir``) and
opens each channel with ``channel_factory``: the server is verified against
the mesh root under its DNS name ``pilotfish-control-plane``, as agents do.
Every channel is still its own TCP connection, so each one does a full TLS
handshake.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilotfish.ca import CONTROL_PLANE_DNS_NAME, CertificateAuthority, SpiffeId

__all__ = [
    "ChannelFactory",
    "ClientTls",
    "channel_factory",
    "issue_client_tls",
    "plaintext_channel",
]

ChannelFactory = Callable[[str, Sequence[tuple[str, Any]]], grpc.aio.Channel]

_ROOT, _CHAIN, _KEY = "root.pem", "chain.pem", "key.pem"


@dataclass(frozen=True)
class ClientTls:
    """PEM bytes a simulated proxy presents (``key_pem``, ``chain_pem``) and trusts."""

    root_pem: bytes
    key_pem: bytes
    chain_pem: bytes

    @classmethod
    def from_dir(cls, directory: Path) -> ClientTls:
        return cls(
            (directory / _ROOT).read_bytes(),
            (directory / _KEY).read_bytes(),
            (directory / _CHAIN).read_bytes(),
        )


def issue_client_tls(
    ca_dir: Path,
    out_dir: Path,
    *,
    trust_domain: str = "cluster.local",
    namespace: str = "default",
    account: str = "default",
) -> Path:
    """Create (or load) the CA in ``ca_dir``, issue a workload certificate for
    ``namespace``/``account`` and write root, chain and key to ``out_dir``."""
    authority = CertificateAuthority.load_or_create(ca_dir, trust_domain)
    identity = SpiffeId(trust_domain, namespace, account)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]), True
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    issued = authority.sign_csr(csr, identity)
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (out_dir / _ROOT).write_text(authority.root_pem)
    (out_dir / _CHAIN).write_text("".join(issued.chain_pem))
    key_path = out_dir / _KEY
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return out_dir


def plaintext_channel(target: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=options)


def channel_factory(tls: ClientTls | None) -> ChannelFactory:
    """Opens plain-text channels (``tls`` None) or mTLS channels presenting ``tls``."""
    if tls is None:
        return plaintext_channel
    credentials = grpc.ssl_channel_credentials(tls.root_pem, tls.key_pem, tls.chain_pem)

    def secure(target: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        named = [*options, ("grpc.ssl_target_name_override", CONTROL_PLANE_DNS_NAME)]
        return grpc.aio.secure_channel(target, credentials, options=named)

    return secure
