"""One connected ADS stream: its state machine plus an outbound queue.

Every response for a stream goes through its own queue and writer task, so a
client that reads slowly only delays itself: the push loop never awaits a
write. The queue holds ``Response`` plans, not bytes; a response is encoded
(mostly by reusing a cached body) just before it is written, so memory for a
backlog is a few small objects per entry rather than a copy of the resources.

A push to many streams at once would otherwise hold one encoded copy of every
response in memory at the same time (gRPC copies each message and buffers it
until the client reads it). ``WriteLimiter`` bounds how many large responses
(64 KiB of resources or more; small ones go straight out) are in flight: a
slot is held from encoding until the client has answered that response (its
ACK or NACK names the nonce), which is when the bytes are certainly gone from
the server's buffers. A response not answered within ``slow_after`` seconds
(a client that is not reading) gives its slot back and finishes on its own,
so one slow client cannot stall the others for long.

Giving a slot back does not give the bytes back: gRPC still holds its copy
until the write completes. When the whole machine is slow (every client
behind, as in a full push to a thousand proxies over TLS), every write becomes
"slow", and counting slots alone would let all of them be in flight at once.
So the limiter also keeps a byte budget over writes not yet completed, slow
ones included: a write waits while the bytes in flight plus its own would
exceed it (one write alone is always let through, however large). A client
that stops reading holds at most its one pending response against the budget.

Endpoint updates (every EDS response after a stream's first) skip the
limiter. Under churn every push sends each stream one, and a stream has at
most one response queued (``catch_up_when_idle``), so what they hold is
bounded by one update per stream. Through the limiter, 1000 streams took turns
on 64 slots held until each ACK, or on the byte budget when a stream that had
fallen behind caught up with a megabyte of load assignments, and every turn
made the next update larger. A stream's first EDS response (the whole set, as
in a full push) still goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable

from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.secret_access import SecretAccess
from pilotfish.xds.server.state import Response, StreamStateBase
from pilotfish.xds.types import ENDPOINT_TYPE

__all__ = ["ProxyStream", "WriteLimiter"]


class WriteLimiter:
    """Bounds concurrent response writes across all streams."""

    def __init__(
        self, max_in_flight: int = 64, slow_after: float = 2.0, max_bytes: int = 96 << 20
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._slots = asyncio.Semaphore(max_in_flight)
        self._slow_after = slow_after
        self._max_bytes = max_bytes
        self._bytes = 0  # of writes handed to gRPC and not completed
        self._waiters: list[asyncio.Future[None]] = []
        self._slot_waiters = 0
        self.slow_writes = 0
        self.peak_bytes = 0

    @property
    def bytes_in_flight(self) -> int:
        """Bytes of writes started and not yet completed (slow ones included)."""
        return self._bytes

    @property
    def waiting_for_bytes(self) -> int:
        """Writes waiting for bytes in flight to complete before they start."""
        return len(self._waiters)

    @property
    def waiting_for_slot(self) -> int:
        """Writes waiting for a slot (every slot held by a write or its ACK)."""
        return self._slot_waiters

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        self._slot_waiters += 1
        try:
            await self._slots.acquire()
        finally:
            self._slot_waiters -= 1
        try:
            yield
        finally:
            self._slots.release()

    async def write(
        self,
        send: Callable[[bytes], Awaitable[None]],
        answered: asyncio.Event | None = None,
        encode: Callable[[], bytes] | None = None,
        size: int | None = None,
    ) -> None:
        """Run ``send(encode())`` holding a slot until it is done and ``answered`` is
        set, for at most ``slow_after`` seconds in all. ``size`` (default: the encoded
        length) counts against the byte budget until ``send`` completes; given, it is
        reserved before encoding, so a write waiting for the budget holds no bytes."""
        async with self._slot():
            loop = asyncio.get_running_loop()
            data: bytes | None = None
            if size is None:
                data = encode() if encode is not None else b""
                size = len(data)
            await self._reserve(size)
            if data is None:
                try:
                    data = encode() if encode is not None else b""
                except BaseException:
                    self._release(size, None)
                    raise
            deadline = loop.time() + self._slow_after
            task = asyncio.ensure_future(send(data))
            task.add_done_callback(functools.partial(self._release, size))
            try:
                done, _ = await asyncio.wait({task}, timeout=self._slow_after)
            except asyncio.CancelledError:
                task.cancel()  # the stream is going away: do not leave the write behind
                raise
            if done:
                task.result()
                if answered is not None and not answered.is_set():
                    remaining = deadline - loop.time()
                    if remaining > 0:
                        # Not wait_for: on Python 3.11 it can swallow a cancellation
                        # that races with the event being set (the stream closing).
                        waiter = asyncio.ensure_future(answered.wait())
                        try:
                            await asyncio.wait({waiter}, timeout=remaining)
                        finally:
                            waiter.cancel()
                return
            self.slow_writes += 1
        await task  # finish outside the slot

    async def _reserve(self, size: int) -> None:
        while self._bytes and self._bytes + size > self._max_bytes:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._bytes += size
        self.peak_bytes = max(self.peak_bytes, self._bytes)

    def _release(self, size: int, _task: object) -> None:
        self._bytes -= size
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:  # each checks the budget again
            if not waiter.done():
                waiter.set_result(None)


# Responses below this many bytes of resources are written without the limiter.
_SMALL_RESPONSE_BYTES = 64 * 1024


def _size_of(response: Response) -> int:
    """Bytes of the resources a response carries (without framing)."""
    source = response.source
    if response.names is None:
        return source.byte_size()
    resources = source.resources
    return sum(len(resources[name]) for name in response.names)


class ProxyStream:
    """Runtime record of one ADS stream. Owned by the server's stream table."""

    __slots__ = (
        "_answered",
        "_half_closed",
        "_on_idle",
        "_queue",
        "closed",
        "connected_at",
        "encoder",
        "needs_push",
        "proxy_id",
        "secret_access",
        "secrets_denied",
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
        state: StreamStateBase,
        encoder: ResponseEncoder,
        secret_access: SecretAccess | None = None,
        on_idle: Callable[[ProxyStream], None] | None = None,
    ) -> None:
        self.stream_id = stream_id
        # A push found this stream still writing an earlier one and left it out;
        # ``on_idle`` plans it from the newest config once the queue is empty
        # (see ``catch_up_when_idle``).
        self.needs_push = False
        self._on_idle = on_idle
        # Which credential secrets this stream may receive, and the names refused
        # so far (name -> reason), for status.
        self.secret_access = secret_access or SecretAccess()
        self.secrets_denied: dict[str, str] = {}
        self.proxy_id = proxy_id
        self.view = view
        self.view_repr = repr(view)
        self.connected_at = connected_at
        self.state = state
        self.encoder = encoder
        self.closed = False
        self._queue: asyncio.Queue[Response] = asyncio.Queue()
        # nonce -> set when the client answers that response (see WriteLimiter).
        self._answered: dict[str, asyncio.Event] = {}
        self._half_closed = False  # the client sends no more: it will never answer

    @property
    def protocol(self) -> str:
        """``delta`` for an incremental ADS stream, else ``sotw``."""
        return self.state.protocol

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
        endpoints_sent = False  # an EDS response was written: later ones are updates
        while not self.closed:
            response = await queue.get()
            try:
                # Small responses and endpoint updates skip the limiter (see the
                # module doc); anything else large goes through it, whole sets and
                # partial ones alike (a changed route configuration can be a megabyte).
                endpoints = response.type_url == ENDPOINT_TYPE
                if (
                    limiter is None
                    or (endpoints and endpoints_sent)
                    or (size := _size_of(response)) < _SMALL_RESPONSE_BYTES
                ):
                    await write(encoder.encode(response))
                else:
                    answered = asyncio.Event()
                    if self._half_closed:
                        answered.set()
                    self._answered[response.nonce] = answered
                    try:
                        await limiter.write(
                            write, answered, functools.partial(encoder.encode, response), size
                        )
                    finally:
                        self._answered.pop(response.nonce, None)
                endpoints_sent = endpoints_sent or endpoints
            finally:
                queue.task_done()
            if self.needs_push and queue.empty() and self._on_idle is not None:
                self.needs_push = False
                self._on_idle(self)

    def catch_up_when_idle(self) -> bool:
        """Leave this stream out of a push while its writer is behind.

        True (and the stream is marked) when responses are still queued: the
        push's plan would only queue behind them, and under a steady stream of
        changes a slow client would be sent every intermediate version, one
        response per push, without bound. Instead, when the queue empties the
        stream is planned once, from the newest configuration: its state diffs
        against what it was last sent, so the versions it skipped cost nothing.
        """
        if self._on_idle is None or self._queue.empty():
            return False
        self.needs_push = True
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued response has been written (at most ``timeout`` s).

        For a client that half-closed its side: it asked, so it gets its answers
        before the stream ends. False if they were not all written in time.
        """
        # No ACK will come: do not hold write slots waiting for one.
        self._half_closed = True
        for event in self._answered.values():
            event.set()
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    def replied(self, nonce: str) -> None:
        """The client answered (ACK or NACK) the response with ``nonce``."""
        event = self._answered.get(nonce)
        if event is not None:
            event.set()

    def close(self) -> None:
        """Stop accepting responses and drop the backlog."""
        self.closed = True
        for event in self._answered.values():
            event.set()
        queue = self._queue
        while not queue.empty():
            queue.get_nowait()
