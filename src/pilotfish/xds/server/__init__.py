"""The xDS protocol server: SotW ADS over grpc.aio for Envoy proxies.

``XdsServer`` is the entry point; ``state`` holds the sans-IO per-stream
bookkeeping, ``encode`` the response wire encoding, ``status`` the records
behind /debug/syncz, ``tls`` the TLS port (client-certificate identity).
"""

from __future__ import annotations

from pilotfish.xds.server.service import ADS_METHOD, ADS_SERVICE, XdsServer
from pilotfish.xds.server.status import ProxyStatus, TypeStatus
from pilotfish.xds.server.tls import PeerInfo, TlsServerConfig

__all__ = [
    "ADS_METHOD",
    "ADS_SERVICE",
    "PeerInfo",
    "ProxyStatus",
    "TlsServerConfig",
    "TypeStatus",
    "XdsServer",
]
