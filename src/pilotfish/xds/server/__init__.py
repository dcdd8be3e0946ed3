"""The xDS protocol server: SotW ADS over grpc.aio for Envoy proxies.

``XdsServer`` is the entry point; ``state`` holds the sans-IO per-stream
bookkeeping, ``encode`` the response wire encoding, ``status`` the records
behind /debug/syncz, ``tls`` the credentials of the secure ports and
``peer_identity`` the client-certificate identity of calls on the mTLS port.
"""

from __future__ import annotations

from pilotfish.xds.server.peer_identity import PeerInfo
from pilotfish.xds.server.service import ADS_METHOD, ADS_SERVICE, XdsServer
from pilotfish.xds.server.status import ProxyStatus, TypeStatus
from pilotfish.xds.server.tls import TlsServerConfig

__all__ = [
    "ADS_METHOD",
    "ADS_SERVICE",
    "PeerInfo",
    "ProxyStatus",
    "TlsServerConfig",
    "TypeStatus",
    "XdsServer",
]
