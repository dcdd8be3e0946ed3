"""The one process of an ambient pod besides its app: readiness, no proxy.

An ambient pod has no sidecar: its traffic is carried by the host's node proxy,
which opens listeners inside the pod's network namespace. This small process
runs in that namespace (as the proxy user, in its sandbox) and serves what the
runtime asks a sidecar's agent for, on the same port (15021):

- ``/healthz/ready``: 200 once the node proxy's three listeners for this pod
  (outbound 15001, inbound 15006, HBONE 15008) accept connections here, so the
  app is started only when its traffic is already carried (Istio's
  ``holdApplicationUntilProxyStarts``). A listener with TLS is only opened
  once the node proxy holds the pod's certificate, so this also means the
  pod's identity is served;
- ``/app-health/<port>/ready``: the app's readiness check, run from inside the
  pod against 127.0.0.1 (which capture leaves alone), as the agent does.

A pod out of the mesh (sidecar injection disabled by its labels) runs the same
process with ``--without-node-proxy``: no listeners to wait for, only the app's
readiness check, which is the part of a kubelet the runtime plays.

``python -m pilotfish.runtime.ambient_pod --app-probe http:9080:/health``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from pilotfish.agent.config import parse_app_probe
from pilotfish.agent.health import AppHealthChecker, HealthServer, Readiness

__all__ = ["NODE_PROXY_PORTS", "NodeProxyListeners", "main"]

NODE_PROXY_PORTS = (15001, 15006, 15008)
_CONNECT_TIMEOUT = 0.5


class NodeProxyListeners:
    """Ready while every node proxy listener of this pod accepts a connection."""

    def __init__(self, ports: Sequence[int] = NODE_PROXY_PORTS, host: str = "127.0.0.1") -> None:
        self._ports = tuple(ports)
        self._host = host

    async def _accepts(self, port: int) -> bool:
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                _, writer = await asyncio.open_connection(self._host, port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def check(self) -> Readiness:
        answers = await asyncio.gather(*(self._accepts(p) for p in self._ports))
        missing = [str(p) for p, ok in zip(self._ports, answers, strict=True) if not ok]
        if missing:
            return Readiness(False, f"node proxy not listening here yet on {', '.join(missing)}")
        return Readiness(True, "ready")


async def _serve(args: argparse.Namespace) -> None:
    probes = tuple(parse_app_probe(p) for p in args.app_probe)
    app_health = AppHealthChecker(probes, args.app_address, {}) if probes else None
    listeners = NodeProxyListeners(() if args.without_node_proxy else NODE_PROXY_PORTS)
    server = HealthServer(listeners, args.health_bind, args.health_port, app_health=app_health)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("pilotfish.ambient_pod").info(
        "ambient pod %s: health on %s:%d", args.name, args.health_bind, args.health_port
    )
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pilotfish-ambient-pod")
    parser.add_argument("--name", default="")
    parser.add_argument("--health-bind", default="0.0.0.0")
    parser.add_argument("--health-port", type=int, default=15021)
    parser.add_argument("--app-address", default="127.0.0.1")
    parser.add_argument("--app-probe", action="append", default=[])
    parser.add_argument("--without-node-proxy", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
