"""Leader election through an etcd lease: one control plane at a time runs the singleton jobs.

Theory of operation: every candidate holds a lease of ``ttl`` seconds and
tries to create the election key bound to it, in a transaction that only
succeeds while the key does not exist (``create_revision == 0``). The one
that created it leads; the others read who holds it and try again every
``retry`` seconds. The leader renews its lease every ``ttl / 3`` seconds
and checks that the key still holds its lease.

Leadership ends in one of three ways:

- the leader resigns (``close()``): it revokes its lease, etcd deletes the
  key at once, and the next candidate to try takes over within ``retry``;
- the leader dies or loses etcd: its lease is no longer renewed and etcd
  deletes the key ``ttl`` seconds after the last renewal, so another
  candidate takes over within ``ttl + retry`` of that renewal;
- a renewal shows the lease gone (or the key held by another lease).

A leader that cannot renew does not wait for etcd to tell it: it counts
itself leader only until ``ttl`` seconds after the *sending* of its last
successful renewal (etcd's own expiry comes later than that), then steps
down. So two candidates never both believe they lead, as long as clocks run
at the same rate. ``on_change`` is called with the new state at every
change.

The key lives outside the configuration's prefix (``/pilotfish/leader``
by default), so elections never show up as configuration revisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from pilotfish.store.etcd_client import EtcdClient, EtcdError, b64, unb64

__all__ = ["DEFAULT_ELECTION_KEY", "LeaderElection"]

DEFAULT_ELECTION_KEY = "/pilotfish/leader"

_log = logging.getLogger("pilotfish.store.etcd.leader")

_NOT_FOUND = 5  # gRPC NOT_FOUND: etcd's answer about a lease that expired


class LeaderElection:
    """Campaigns for ``key`` as ``identity`` until ``close()``; see the module docstring."""

    def __init__(
        self,
        client: EtcdClient,
        identity: str,
        *,
        key: str = DEFAULT_ELECTION_KEY,
        ttl: int = 10,
        retry: float | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if ttl < 2:
            raise ValueError("the lease TTL must be at least 2 seconds")
        self._client = client
        self.identity = identity
        self.key = key
        self.ttl = ttl
        self._retry = retry if retry is not None else min(1.0, ttl / 10)
        self._on_change = on_change
        self._lease: int | None = None
        self._leading_until = 0.0  # loop time until which leading is certain
        self._leader = False
        self.holder: str | None = None  # who leads, as last read (None: nobody known)
        self.terms = 0  # how many times this candidate became leader
        # Set once the first campaign got an answer (led or not): a starting control
        # plane waits for it, so it knows its role before serving.
        self.decided = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        if self._leader and asyncio.get_running_loop().time() >= self._leading_until:
            self._set(False)  # the renewal deadline passed before the loop noticed
        return self._leader

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pilotfish-leader-election")

    async def close(self, *, resign: bool = True) -> None:
        """Stop campaigning; ``resign`` revokes the lease so another takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        lease, self._lease = self._lease, None
        self._set(False)
        if resign and lease is not None:
            with contextlib.suppress(EtcdError):
                await self._client.acall("/v3/lease/revoke", {"ID": str(lease)})

    def _set(self, leading: bool) -> None:
        if leading == self._leader:
            return
        self._leader = leading
        if leading:
            self.terms += 1
            self.holder = self.identity
        _log.info("%s %s leadership of %s", self.identity, "took" if leading else "lost", self.key)
        if self._on_change is not None:
            try:
                self._on_change(leading)
            except Exception:
                _log.exception("leadership listener failed")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._leader:
                    await self._renew(loop)
                    await asyncio.sleep(self.ttl / 3)
                else:
                    await self._campaign(loop)
                    self.decided.set()
                    if not self._leader:
                        await asyncio.sleep(self._retry)
            except EtcdError as exc:
                if exc.code == _NOT_FOUND and self._lease is not None:
                    # The lease expired (etcd deleted the key with it): start over.
                    self._lease = None
                    self._set(False)
                    continue
                _log.warning("leader election: %s", exc)
                pause = self._retry
                if self._leader:
                    # Wake up at the deadline at the latest, to step down on time.
                    pause = max(0.0, min(pause, self._leading_until - loop.time()))
                await asyncio.sleep(pause)
                self.is_leader  # noqa: B018 - steps down once the deadline has passed

    async def _campaign(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._lease is None:
            sent = loop.time()
            granted = await self._client.acall("/v3/lease/grant", {"TTL": str(self.ttl)})
            self._lease = int(granted["ID"])
            self._leading_until = sent + int(granted.get("TTL", 0))
        key = b64(self.key)
        reply = await self._client.acall(
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                ],
                "success": [
                    {
                        "request_put": {
                            "key": key,
                            "value": b64(self.identity),
                            "lease": str(self._lease),
                        }
                    }
                ],
                "failure": [{"request_range": {"key": key}}],
            },
        )
        kvs = []
        if not reply.get("succeeded"):
            kvs = reply["responses"][0].get("response_range", {}).get("kvs", [])
        # Created now, or ours already (an answer lost on the way back, a leader
        # that stepped down while etcd was away and still holds the key).
        if reply.get("succeeded") or (kvs and int(kvs[0].get("lease", 0)) == self._lease):
            await self._renew(loop)  # makes the deadline certain before leading
            if self._lease is not None and loop.time() < self._leading_until:
                self._set(True)
            return
        self.holder = unb64(kvs[0].get("value", "")).decode("utf-8", "replace") if kvs else None

    async def _renew(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._lease is not None
        sent = loop.time()
        reply = await self._client.acall("/v3/lease/keepalive", {"ID": str(self._lease)})
        ttl = int(reply.get("result", {}).get("TTL", 0))
        if ttl <= 0:
            self._lease = None  # expired or revoked: the key went with it
            self._set(False)
            return
        self._leading_until = sent + ttl
        if self._leader:
            held = await self._client.acall("/v3/kv/range", {"key": b64(self.key)})
            kvs = held.get("kvs", [])
            if not kvs or int(kvs[0].get("lease", 0)) != self._lease:
                self._set(False)  # someone removed or replaced the key
