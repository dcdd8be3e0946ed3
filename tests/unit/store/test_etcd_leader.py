"""Leader election through an etcd lease, with two candidates against a real etcd."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from etcdkit import EtcdServer, Relay
from pilotfish.store.etcd_client import EtcdClient, parse_endpoints
from pilotfish.store.etcd_leader import LeaderElection
from polling import apoll

TTL = 2  # seconds: etcd's lease granularity is one second; two keeps the tests short
RETRY = 0.1


def candidate(address: str, name: str) -> LeaderElection:
    client = EtcdClient(parse_endpoints(f"etcd://{address}"))
    return LeaderElection(client, name, ttl=TTL, retry=RETRY)


class Overlap:
    """Samples both candidates every few milliseconds: two leaders at once is a failure."""

    def __init__(self, candidates: list[LeaderElection]) -> None:
        self.candidates = candidates
        self.both = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            if sum(c.is_leader for c in self.candidates) > 1:
                self.both += 1
            await asyncio.sleep(0.005)

    def __enter__(self) -> Overlap:
        self._task = asyncio.ensure_future(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
async def pair(etcd_server: EtcdServer) -> AsyncIterator[list[LeaderElection]]:
    both = [candidate(etcd_server.address, "a"), candidate(etcd_server.address, "b")]
    try:
        for c in both:
            c.start()
        yield both
    finally:
        for c in both:
            await c.close()
            await c._client.close()


async def one_leader(candidates: list[LeaderElection]) -> LeaderElection:
    def single() -> LeaderElection | None:
        leaders = [c for c in candidates if c.is_leader]
        return leaders[0] if len(leaders) == 1 else None

    return await apoll(single, "exactly one leader", 10.0)


async def follower_knows(follower: LeaderElection, leader: LeaderElection) -> None:
    # The follower reads the holder on its own next campaign, which may still be
    # ahead of it when the leader is seen (its lease grant answered later than the
    # leader's): one retry later it knows. The deadline leaves room for a busy
    # machine, where each of its etcd calls can take a while.
    await apoll(
        lambda: follower.holder == leader.identity,
        f"{follower.identity} to read {leader.identity} as the holder",
        TTL,
        context=lambda: f"holder as read: {follower.holder!r}",
    )


async def takeover_seconds(
    pair: list[LeaderElection], stop: Callable[[LeaderElection], object]
) -> tuple[LeaderElection, LeaderElection, float]:
    first = await one_leader(pair)
    other = next(c for c in pair if c is not first)
    await follower_knows(other, first)
    began = time.monotonic()
    result = stop(first)
    if asyncio.iscoroutine(result):
        await result
    await apoll(lambda: other.is_leader, "the other candidate to take over", TTL * 3)
    took = time.monotonic() - began
    print(f"takeover after {took:.3f}s")  # shown with -s: the measured number
    return first, other, took


async def test_one_leader_at_a_time_and_the_other_follows(pair: list[LeaderElection]) -> None:
    with Overlap(pair) as overlap:
        leader = await one_leader(pair)
        # Several renewals later it still leads alone.
        await apoll(lambda: leader.terms == 1 and leader.is_leader, "a steady leader", 1.0)
        await asyncio.sleep(0)  # let the sampler run at least once more
        follower = next(c for c in pair if c is not leader)
        await follower_knows(follower, leader)
        assert not follower.is_leader and leader.is_leader
    assert overlap.both == 0


async def test_a_resigning_leader_is_replaced_at_once(pair: list[LeaderElection]) -> None:
    with Overlap(pair) as overlap:
        first, other, took = await takeover_seconds(pair, lambda c: c.close(resign=True))
    assert not first.is_leader and other.is_leader
    assert took < 1.0, f"takeover after a resignation took {took:.2f}s"
    assert overlap.both == 0


async def test_a_dead_leader_is_replaced_within_the_lease_ttl(
    pair: list[LeaderElection],
) -> None:
    """A leader that stops without resigning (a crash): its lease runs out."""
    with Overlap(pair) as overlap:
        first, other, took = await takeover_seconds(pair, lambda c: c.close(resign=False))
    assert other.is_leader and not first.is_leader
    # etcd deletes the key at most TTL after the last renewal; then one retry.
    assert took <= TTL + 2 * RETRY + 0.5, f"takeover after a crash took {took:.2f}s"
    assert overlap.both == 0


async def test_a_leader_cut_off_from_etcd_steps_down_before_the_other_takes_over(
    etcd_server: EtcdServer,
) -> None:
    relay = Relay(etcd_server.port)
    relay.start()
    cut_off = candidate(f"127.0.0.1:{relay.port}", "cut-off")
    other = candidate(etcd_server.address, "other")
    try:
        cut_off.start()
        await apoll(lambda: cut_off.is_leader, "the first candidate to lead", 10.0)
        other.start()
        await apoll(lambda: other.holder == "cut-off", "the other to see the leader", 10.0)
        with Overlap([cut_off, other]) as overlap:
            relay.cut()
            began = time.monotonic()
            await apoll(lambda: not cut_off.is_leader, "the cut-off leader to step down", TTL * 2)
            stepped_down = time.monotonic() - began
            await apoll(lambda: other.is_leader, "the other to take over", TTL * 3)
        assert stepped_down <= TTL + 0.2, f"stepping down took {stepped_down:.2f}s"
        assert overlap.both == 0
        # Back on the network it stays a follower of the new leader.
        relay.restore()
        await apoll(lambda: cut_off.holder == "other", "the old leader to see the new one", 10.0)
        assert not cut_off.is_leader
    finally:
        for c in (cut_off, other):
            await c.close()
            await c._client.close()
        relay.close()
