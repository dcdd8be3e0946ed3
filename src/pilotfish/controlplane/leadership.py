"""Which control plane of several sharing one etcd runs the singleton jobs.

Theory of operation: with an etcd store every control plane campaigns
(``store.etcd_leader.LeaderElection``) on ``/pilotfish/leader`` as
``<host>/<pid>``; the one that leads runs the jobs that must run once per
mesh, the others stand by and take over when its lease runs out. Today's
singleton job is fetching JWKS (``controlplane.shared_jwks``): the leader
fetches and publishes the documents in etcd, every replica serves them.
``pilotfish_leader`` (1 on the leader) and ``/debug/leader`` say who leads.
A control plane on files is alone and always leads (no election).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.store.etcd_client import EtcdClient, parse_endpoints
from pilotfish.store.etcd_leader import LeaderElection

__all__ = ["Leadership"]

log = logging.getLogger("pilotfish.controlplane.leadership")

#: How long a starting control plane waits to learn whether it leads.
_DECIDE_TIMEOUT = 5.0


class Leadership:
    """The election of one control plane, with listeners and a gauge."""

    def __init__(
        self, settings: ControlPlaneSettings, registry: CollectorRegistry, ttl: int = 10
    ) -> None:
        assert settings.config_store is not None
        self.client = EtcdClient(parse_endpoints(settings.config_store), settings.etcd_tls)
        self.election = LeaderElection(
            self.client, f"{socket.gethostname()}/{os.getpid()}", ttl=ttl, on_change=self._changed
        )
        self._listeners: list[Callable[[bool], None]] = []
        self._gauge = Gauge(
            "pilotfish_leader",
            "1 while this control plane leads (runs the singleton jobs)",
            registry=registry,
        )

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader

    def add_listener(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def _changed(self, leading: bool) -> None:
        self._gauge.set(1 if leading else 0)
        for listener in tuple(self._listeners):
            try:
                listener(leading)
            except Exception:
                log.exception("leadership listener failed")

    async def start(self) -> None:
        """Campaign, and wait (briefly) for the first answer."""
        self.election.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.election.decided.wait(), _DECIDE_TIMEOUT)

    async def close(self) -> None:
        await self.election.close(resign=True)
        await self.client.close()

    async def handle_debug(self, request: web.Request) -> web.Response:
        return web.json_response(self.describe())

    def describe(self) -> dict[str, object]:
        """For ``/debug/leader``."""
        return {
            "identity": self.election.identity,
            "leader": self.is_leader,
            "holder": self.election.holder,
            "key": self.election.key,
            "ttlSeconds": self.election.ttl,
            "terms": self.election.terms,
        }
