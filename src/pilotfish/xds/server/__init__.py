"""The xDS protocol server: SotW ADS over grpc.aio for Envoy proxies.

``XdsServer`` is the entry point; ``state`` holds the sans-IO per-stream
bookkeeping, ``encode`` the response wire encoding, ``status`` the records
behind /debug/syncz.
"""

from __future__ import annotations

from pilotfish.xds.server.service import ADS_METHOD, ADS_SERVICE, XdsServer
from pilotfish.xds.server.status import ProxyStatus, TypeStatus

__all__ = ["ADS_METHOD", "ADS_SERVICE", "ProxyStatus", "TypeStatus", "XdsServer"]
