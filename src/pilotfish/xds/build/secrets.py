"""IR credential secrets -> Envoy SDS ``Secret`` resources.

A ``CredentialSecret`` with a certificate becomes a ``tls_certificate``
(chain and key, inline bytes); one with a CA bundle a
``validation_context`` (trusted CA, inline bytes). These resources are the
only place a ``credentialName`` Secret's key reaches Envoy: they travel on
the proxy's ADS stream as type ``envoy.extensions.transport_sockets.tls.v3.Secret``
and are never cached with the shared listener/cluster builds. Debug output
shows them through ``pilotfish.ir.dump.redact`` (``private_key`` redacted).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from pilotfish import ir

__all__ = ["build_secret"]


def build_secret(secret: ir.CredentialSecret) -> secret_pb2.Secret:
    """The SDS resource named ``secret.name``. Raises ``ValueError`` when it holds
    neither a CA bundle nor a certificate with its key."""
    proto = secret_pb2.Secret(name=secret.name)
    if secret.ca_pem:
        proto.validation_context.CopyFrom(
            common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=secret.ca_pem.encode())
            )
        )
        return proto
    if not (secret.cert_pem and secret.key_pem):
        raise ValueError(f"credential {secret.name} has neither a CA nor a certificate and key")
    proto.tls_certificate.CopyFrom(
        common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=secret.cert_pem.encode()),
            private_key=base_pb2.DataSource(inline_bytes=secret.key_pem.encode()),
        )
    )
    return proto
