"""An ambient pod's readiness: ready exactly while the node proxy listens on every
one of the pod's ports (real sockets on loopback)."""

from __future__ import annotations

import asyncio

from pilotfish.runtime.ambient_pod import NodeProxyListeners


async def _listen() -> tuple[asyncio.Server, int]:
    async def close(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_ready_only_while_every_listener_accepts() -> None:
    (a, pa), (b, pb) = await _listen(), await _listen()
    probe = NodeProxyListeners((pa, pb))
    try:
        assert (await probe.check()).ready
        b.close()
        await b.wait_closed()
        result = await probe.check()
        assert not result.ready and str(pb) in result.reason and str(pa) not in result.reason
    finally:
        a.close()
        await a.wait_closed()


async def test_without_node_proxy_ports_it_is_ready_at_once() -> None:
    # A pod out of the mesh: nothing to wait for but its app's own probe.
    assert (await NodeProxyListeners(()).check()).ready
