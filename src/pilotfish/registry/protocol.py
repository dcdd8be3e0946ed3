"""Which protocol a port speaks, decided as Istio does.

``appProtocol`` wins; otherwise the port name's prefix before ``-`` (``http``,
``http-web``, ``grpc-api``); otherwise, for ServiceEntry ports, the declared
protocol. Anything unrecognised is TCP: the proxy never guesses HTTP, so an
unknown protocol is still carried, only without HTTP routing.
"""

from __future__ import annotations

from pilotfish.registry.model import Protocol

__all__ = ["KNOWN_PROTOCOL_NAMES", "protocol_of"]

_KNOWN: dict[str, Protocol] = {
    "http": "HTTP",
    "http2": "HTTP2",
    "h2c": "HTTP2",
    "kubernetes.io/h2c": "HTTP2",
    "grpc": "GRPC",
    "grpc-web": "GRPC-WEB",
    "https": "HTTPS",
    "tls": "TLS",
    "tcp": "TCP",
    "mongo": "MONGO",
    "redis": "REDIS",
    "mysql": "MYSQL",
    "udp": "UDP",
}

#: Port names (or name prefixes before ``-``) that declare a protocol.
KNOWN_PROTOCOL_NAMES = frozenset(_KNOWN)


def _lookup(value: str | None) -> Protocol | None:
    if not value:
        return None
    return _KNOWN.get(value.strip().lower())


def protocol_of(
    name: str | None, app_protocol: str | None = None, declared: str | None = None
) -> Protocol:
    """Protocol of a port from its ``appProtocol``, its name prefix, or its declared protocol."""
    by_app = _lookup(app_protocol)
    if by_app is not None:
        return by_app
    if name:
        lowered = name.lower()
        by_name = _lookup(lowered) or _lookup(lowered.split("-", 1)[0])
        if lowered.startswith("grpc-web"):
            by_name = "GRPC-WEB"
        if by_name is not None:
            return by_name
    by_declared = _lookup(declared)
    if by_declared is not None and by_declared != "UDP":
        return by_declared
    return "TCP"
