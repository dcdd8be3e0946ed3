"""WriteLimiter: slots per write, and a byte budget that slow writes keep holding."""

from __future__ import annotations

import asyncio

from tests.polling import apoll

from pilotfish.xds.server.stream import WriteLimiter


class _Sends:
    """``send`` callables whose completion the test decides."""

    def __init__(self) -> None:
        self.started: list[bytes] = []
        self._gates: list[asyncio.Future[None]] = []

    async def send(self, data: bytes) -> None:
        gate = asyncio.get_running_loop().create_future()
        self.started.append(data)
        self._gates.append(gate)
        await gate

    def finish(self, index: int) -> None:
        self._gates[index].set_result(None)


async def test_a_slow_write_gives_its_slot_back_but_not_its_bytes() -> None:
    limiter = WriteLimiter(max_in_flight=4, slow_after=0.05, max_bytes=100)
    sends = _Sends()
    first = asyncio.ensure_future(limiter.write(sends.send, None, lambda: b"x" * 60))
    await apoll(lambda: len(sends.started) == 1, "len(sends.started) == 1", 5)
    second = asyncio.ensure_future(limiter.write(sends.send, None, lambda: b"y" * 60))
    # The first write outlives slow_after: its slot is free, yet the second write
    # would exceed the byte budget, so it is not handed to gRPC.
    await apoll(lambda: limiter.slow_writes == 1, "limiter.slow_writes == 1", 5)
    await apoll(lambda: limiter.waiting_for_bytes == 1, "second write waits for bytes", 5)
    assert len(sends.started) == 1 and limiter.bytes_in_flight == 60
    sends.finish(0)
    await apoll(lambda: len(sends.started) == 2, "len(sends.started) == 2", 5)
    assert limiter.bytes_in_flight == 60
    sends.finish(1)
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert limiter.bytes_in_flight == 0 and limiter.peak_bytes == 60


async def test_one_write_larger_than_the_budget_still_goes_alone() -> None:
    limiter = WriteLimiter(max_in_flight=2, slow_after=5, max_bytes=10)
    sends = _Sends()
    task = asyncio.ensure_future(limiter.write(sends.send, None, lambda: b"z" * 50))
    await apoll(lambda: len(sends.started) == 1, "len(sends.started) == 1", 5)
    sends.finish(0)
    await asyncio.wait_for(task, timeout=5)
    assert limiter.bytes_in_flight == 0


async def test_writes_within_the_budget_run_together() -> None:
    limiter = WriteLimiter(max_in_flight=8, slow_after=5, max_bytes=100)
    sends = _Sends()
    tasks = [
        asyncio.ensure_future(limiter.write(sends.send, None, lambda: b"w" * 20)) for _ in range(5)
    ]
    await apoll(lambda: len(sends.started) == 5, "len(sends.started) == 5", 5)
    assert limiter.bytes_in_flight == 100
    for i in range(5):
        sends.finish(i)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)


async def test_a_write_given_its_size_is_encoded_only_once_the_budget_allows() -> None:
    limiter = WriteLimiter(max_in_flight=4, slow_after=5, max_bytes=100)
    sends = _Sends()
    encoded: list[str] = []

    def encode(tag: str) -> bytes:
        encoded.append(tag)
        return tag.encode() * 60

    first = asyncio.ensure_future(limiter.write(sends.send, None, lambda: encode("a"), 60))
    await apoll(lambda: len(sends.started) == 1, "first write started", 5)
    second = asyncio.ensure_future(limiter.write(sends.send, None, lambda: encode("b"), 60))
    await apoll(lambda: limiter.waiting_for_bytes == 1, "second write waits for bytes", 5)
    assert encoded == ["a"]  # the waiting write's bytes do not exist yet
    sends.finish(0)
    await apoll(lambda: len(sends.started) == 2, "second write started", 5)
    assert encoded == ["a", "b"]
    sends.finish(1)
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert limiter.bytes_in_flight == 0
