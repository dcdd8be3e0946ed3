"""Two control planes on one real etcd: shared configuration, one leader, and the
leader's singleton job (JWKS fetching) published to both."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from etcdkit import EtcdServer, etcd_server
from pilotfish.api.loader import load_text
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.translate.security.jwt import FAKE_JWKS
from polling import apoll

__all__ = ["etcd_server"]

TTL = 2


def request_authentication(uri: str) -> str:
    return f"""\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
  namespace: default
spec:
  selector:
    matchLabels:
      app: reviews
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: {uri}
"""


@pytest.fixture
async def issuer() -> AsyncIterator[tuple[list[int], str]]:
    hits: list[int] = []

    async def handle(_request: web.Request) -> web.Response:
        hits.append(1)
        return web.Response(text=FAKE_JWKS)

    app = web.Application()
    app.router.add_get("/jwks", handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield hits, f"http://127.0.0.1:{server.port}/jwks"
    finally:
        await server.close()


def replica(server: EtcdServer) -> ControlPlane:
    return ControlPlane(
        ControlPlaneSettings(
            xds_port=0, http_port=0, config_store=server.url, leader_ttl_seconds=TTL
        )
    )


async def test_replicas_share_config_and_only_the_leader_fetches_jwks(
    etcd_server: EtcdServer, issuer: tuple[list[int], str]
) -> None:
    hits, uri = issuer
    first, second = replica(etcd_server), replica(etcd_server)
    started: list[ControlPlane] = []
    try:
        for cp in (first, second):
            await cp.start()
            started.append(cp)
        assert first.leadership is not None and second.leadership is not None
        await apoll(
            lambda: (
                [cp.leadership.is_leader for cp in started if cp.leadership]
                in (
                    [True, False],
                    [False, True],
                )
            ),
            "exactly one leader",
            10.0,
        )
        leader, follower = (first, second) if first.leadership.is_leader else (second, first)

        (ra,) = load_text(request_authentication(uri), "<test>").resources
        follower.store.apply(ra)  # any replica takes writes; both serve them

        def both_have_the_jwks() -> bool:
            return all(
                json.loads(cp.snapshot.jwks.get(uri, "{}")) == json.loads(FAKE_JWKS)
                for cp in started
            )

        await apoll(both_have_the_jwks, "both replicas to serve the leader's JWKS", 10.0)
        assert len(hits) == 1  # fetched once for the mesh, by the leader

        # The leader goes away: the follower takes over, fetches itself, keeps serving.
        await leader.close()
        started.remove(leader)
        assert follower.leadership is not None
        await apoll(lambda: follower.leadership.is_leader, "the follower to take over", TTL * 3)
        await apoll(lambda: len(hits) == 2, "the new leader to fetch the JWKS", 10.0)
        assert json.loads(follower.snapshot.jwks[uri]) == json.loads(FAKE_JWKS)
    finally:
        for cp in started:
            await cp.close()
