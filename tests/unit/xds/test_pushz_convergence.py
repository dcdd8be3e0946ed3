"""/debug/pushz: a writer can tell when its change has reached every proxy.

A real control plane (file store, xDS on a loopback port) and one real ADS
stream: pushz is converged only once the store's revision is built, no push is
pending, and the proxy has ACKed (or NACKed) every version it was sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import grpc
from ads_client import AdsClient

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.xds.types import CLUSTER_TYPE
from polling import apoll

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: %s, namespace: default}
spec: {selector: {app: %s}, ports: [{name: http, port: 80}]}
"""


async def _pushz(session: aiohttp.ClientSession, cp: ControlPlane) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {cp.api_token.reveal()}"}
    async with session.get(f"http://127.0.0.1:{cp.http_port}/debug/pushz", headers=headers) as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def test_pushz_waits_for_the_build_the_push_and_the_ack(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "a.yaml").write_text(SERVICE % ("a", "a"))
    cp = ControlPlane(
        ControlPlaneSettings(
            config_paths=(str(config),),
            xds_port=0,
            http_port=0,
            poll_interval=0.02,
            quiet_period=0.01,
            max_delay=0.05,
        )
    )
    await cp.start()
    try:
        async with (
            aiohttp.ClientSession() as session,
            grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}") as channel,
        ):
            assert (await _pushz(session, cp))["converged"] is True  # nobody to push to
            client = AdsClient(channel, "web-1.default", {"NAMESPACE": "default"})
            await client.request(CLUSTER_TYPE)
            first = await client.recv()
            state = await _pushz(session, cp)
            assert state["proxies_behind"] == ["web-1.default"] and not state["converged"]
            await client.ack(first)
            await apoll(lambda: _converged(session, cp), "the ACK to count", 10, ignore=())

            # A change: not converged until the new clusters are ACKed too.
            (config / "b.yaml").write_text(SERVICE % ("b", "b"))
            second = await client.recv()
            assert second.version_info != first.version_info
            state = await _pushz(session, cp)
            assert state["store_revision"] == state["snapshot_revision"]
            assert not state["converged"]
            await client.ack(second)
            await apoll(lambda: _converged(session, cp), "the second ACK", 10, ignore=())

            # A rejected version counts as answered: the proxy keeps its last good one.
            (config / "c.yaml").write_text(SERVICE % ("c", "c"))
            third = await client.recv()
            assert (await _pushz(session, cp))["proxies_behind"] == ["web-1.default"]
            await client.nack(third, "rejected on purpose")
            await apoll(lambda: _converged(session, cp), "the NACK to count", 10, ignore=())
            client.cancel()
    finally:
        await cp.close()


async def _converged(session: aiohttp.ClientSession, cp: ControlPlane) -> bool:
    return bool((await _pushz(session, cp))["converged"])
