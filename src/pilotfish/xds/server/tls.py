"""gRPC TLS credentials of the control plane's two secure ports.

Theory of operation
-------------------
Two kinds of clients reach the control plane over TLS: agents that have no
certificate yet (they call the CA with their pod's token) and proxies that
have one (ADS, which must be bound to the certificate's identity). Serving
both on one port needs a TLS server that *requests* a client certificate,
verifies it when given and does not require it. gRPC core can do that
(``GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY``), but grpc-python only
offers ``require_client_auth``: False never asks for a certificate (a
client's certificate is not even sent), True refuses clients without one.
Terminating TLS in Python instead means copying every xDS byte through the
interpreter. So each kind of client gets its own port, and gRPC's C core
does all the TLS:

- the CA port (``server_tls_credentials``, 15012): server-authenticated TLS
  only; the CA authenticates each request by its token;
- the xDS port (``mtls_server_credentials``, 15011): the handshake requires
  a client certificate that chains to the mesh root (expired, foreign-CA and
  missing certificates end the connection before any gRPC byte), and
  ``peer_identity`` binds the node to the certificate's SPIFFE id.

Neither port needs the other's clients, so nothing is lost by the split: the
CA never needed client certificates and ADS never accepts tokens.

The serving certificate is issued by the mesh CA at every control-plane
start (valid a year) and the root does not change while the control plane
runs, so static credentials are enough; a rotated root takes a restart, as
before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

__all__ = ["TlsServerConfig", "mtls_server_credentials", "server_tls_credentials"]


@dataclass(frozen=True)
class TlsServerConfig:
    """What the secure ports serve with.

    - ``cert_chain_pem``/``key_pem``: the server certificate (leaf first) and key.
    - ``root_pem``: client certificates are verified against this bundle.
    - ``trust_domain``: ADS callers must present ``spiffe://<trust_domain>/ns/<NAMESPACE>/
      sa/<SERVICE_ACCOUNT>`` of their node metadata.
    """

    cert_chain_pem: bytes
    key_pem: bytes = field(repr=False)
    root_pem: bytes
    trust_domain: str = "cluster.local"


def mtls_server_credentials(config: TlsServerConfig) -> Any:
    """Credentials that require a client certificate verified against ``root_pem``."""
    return grpc.ssl_server_credentials(
        [(config.key_pem, config.cert_chain_pem)],
        root_certificates=config.root_pem,
        require_client_auth=True,
    )


def server_tls_credentials(config: TlsServerConfig) -> Any:
    """Credentials that authenticate the server only (no client certificate is asked)."""
    return grpc.ssl_server_credentials([(config.key_pem, config.cert_chain_pem)])
