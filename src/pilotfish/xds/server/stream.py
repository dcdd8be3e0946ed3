"""One connected ADS stream: its state machine plus an outbound queue.

Every response for a stream goes through its own queue and writer task, so a
client that reads slowly only delays itself: the push loop never awaits a
write. The queue holds ``Response`` plans, not bytes; a response is encoded
(mostly by reusing a cached body) just before it is written, so memory for a
backlog is a few small objects per entry rather than a copy of the resources.

A push to many streams at once would otherwise hold one encoded copy of every
response in memory at the same time (gRPC copies each message until it is
sent). ``WriteLimiter`` bounds how many writes are in flight; a write that
takes longer than ``slow_after`` seconds (a client that is not reading) gives
its slot back and finishes on its own, so one slow client cannot stall the
others for long.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.state import AdsStreamState, Response

__all__ = ["ProxyStream", "WriteLimiter"]


class WriteLimiter:
    """Bounds concurrent response writes across all streams."""

    def __init__(self, max_in_flight: int = 64, slow_after: float = 2.0) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self._slots = asyncio.Semaphore(max_in_flight)
        self._slow_after = slow_after
        self.slow_writes = 0

    async def write(self, send: Callable[[], Awaitable[None]]) -> None:
        """Run ``send()`` holding a slot for at most ``slow_after`` seconds."""
        async with self._slots:
            task = asyncio.ensure_future(send())
            done, _ = await asyncio.wait({task}, timeout=self._slow_after)
            if done:
                task.result()
                return
            self.slow_writes += 1
        await task  # finish outside the slot


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

    async def write_loop(
        self, write: Callable[[bytes], Awaitable[None]], limiter: WriteLimiter | None = None
    ) -> None:
        """Encode and write queued responses in order until cancelled or a write fails.

        With a ``limiter``, encoding happens inside the slot too, so the bytes
        of waiting responses do not exist yet.
        """
        queue = self._queue
        encoder = self.encoder
        while True:
            response = await queue.get()
            # Partial EDS/RDS updates are small: only whole sets go through the limiter.
            if limiter is None or response.names is not None:
                await write(encoder.encode(response))
            else:
                await limiter.write(functools.partial(self._encode_and_write, write, response))

    async def _encode_and_write(
        self, write: Callable[[bytes], Awaitable[None]], response: Response
    ) -> None:
        await write(self.encoder.encode(response))

    def close(self) -> None:
        """Stop accepting responses and drop the backlog."""
        self.closed = True
        queue = self._queue
        while not queue.empty():
            queue.get_nowait()
