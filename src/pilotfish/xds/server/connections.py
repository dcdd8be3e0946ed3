"""Who wants to know when proxies connect and disconnect (auto-registration does).

The server calls ``proxy_connected`` once a stream's node is accepted and
``proxy_disconnected`` when that stream ends. ``verified`` is True on the mTLS
port, where the node's namespace and service account were checked against its
client certificate; on the plain-text port they are only the node's claim.
A listener must not block: it runs on the server's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["ConnectionListener", "notify_connected", "notify_disconnected"]

_log = logging.getLogger("pilotfish.xds")


class ConnectionListener(Protocol):
    def proxy_connected(
        self, stream_id: int, node_id: str, metadata: Mapping[str, Any], *, verified: bool
    ) -> None: ...

    def proxy_disconnected(self, stream_id: int) -> None: ...


def notify_connected(
    listener: ConnectionListener | None,
    stream_id: int,
    node_id: str,
    metadata: Mapping[str, Any],
    verified: bool,
) -> None:
    """Tell ``listener`` (if any); its failure never touches the stream."""
    if listener is None:
        return
    try:
        listener.proxy_connected(stream_id, node_id, metadata, verified=verified)
    except Exception:
        _log.exception("connection listener failed for %s", node_id)


def notify_disconnected(listener: ConnectionListener | None, stream_id: int) -> None:
    if listener is None:
        return
    try:
        listener.proxy_disconnected(stream_id)
    except Exception:
        _log.exception("connection listener failed for stream %d", stream_id)
