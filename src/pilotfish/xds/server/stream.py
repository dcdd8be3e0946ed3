"""One connected ADS stream: its state machine plus an outbound queue.

Every response for a stream goes through its own queue and writer task, so a
client that reads slowly only delays itself: the push loop never awaits a
write. The queue holds ``Response`` plans, not bytes; a response is encoded
(mostly by reusing a cached body) just before it is written, so memory for a
backlog is a few small objects per entry rather than a copy of the resources.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.state import AdsStreamState, Response

__all__ = ["ProxyStream"]


class ProxyStream:
    """Runtime record of one ADS stream. Owned by the server's stream table."""

    __slots__ = (
        "_queue",
        "closed",
        "connected_at",
        "encoder",
        "proxy_id",
        "state",
        "stream_id",
        "view",
        "view_repr",
    )

    def __init__(
        self,
        stream_id: int,
        proxy_id: str,
        view: object,
        connected_at: float,
        state: AdsStreamState,
        encoder: ResponseEncoder,
    ) -> None:
        self.stream_id = stream_id
        self.proxy_id = proxy_id
        self.view = view
        self.view_repr = repr(view)
        self.connected_at = connected_at
        self.state = state
        self.encoder = encoder
        self.closed = False
        self._queue: asyncio.Queue[Response] = asyncio.Queue()

    @property
    def backlog(self) -> int:
        """Responses queued but not yet handed to gRPC."""
        return self._queue.qsize()

    def enqueue(self, response: Response) -> None:
        """Queue a response for writing. Never blocks; ignored once closed."""
        if not self.closed:
            self._queue.put_nowait(response)

    async def write_loop(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Encode and write queued responses in order until cancelled or a write fails."""
        queue = self._queue
        encoder = self.encoder
        while True:
            response = await queue.get()
            await write(encoder.encode(response))

    def close(self) -> None:
        """Stop accepting responses and drop the backlog."""
        self.closed = True
        queue = self._queue
        while not queue.empty():
            queue.get_nowait()
