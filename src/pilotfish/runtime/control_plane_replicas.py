"""More control-plane replicas for a local mesh (``pilotfish up --control-plane-replicas N``).

Theory of operation
-------------------
The supervisor's own control plane is replica 1. Replicas 2..N are separate
processes (``python -m pilotfish.runtime.control_plane_replicas``), so
killing one leaves the others serving. Each builds its settings with the same
pure function as replica 1 (``control_plane_settings``) from the runtime
settings the supervisor writes to ``<state-dir>/replicas/settings.json``, so
they translate identically: same store (the config files, or the shared etcd
with ``--config-store``/``--addons etcd``, watched by each), mesh config, service range
(service VIPs are a function of the hostnames), CA directory and API token
file. Only the ports differ: replica ``k`` (0-based ``index``) adds
``100 * index`` to each of replica 1's ports, so a restarted supervisor that
adopts running pods finds the replicas where those pods' agents look.

What only the supervisor knows, the live pod and gateway registrations (an
in-memory store), is mirrored to ``<state-dir>/replicas/registrations/
registrations.yaml`` after every change; each replica layers that file over
the config files exactly as replica 1 layers the memory store.

The CA is shared through the CA directory: one root (created under a lock)
and one pod-token store (``TokenRegistry``), so a token registered with
replica 1 is accepted by every replica. Agents are given every replica's
addresses, comma-separated. Replicas run as supervised addons
(``runtime.addons``: restarted with back-off, pid records for the crash
clean-up; a replica left running by a supervisor that crashed is killed
and started afresh by the next one). Singleton jobs (status writing, gateway deployment, DNS files)
stay with the supervisor's replica; electing a leader for them is the etcd
store's work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from pilotfish.controlplane.runner import ControlPlane
from pilotfish.controlplane.settings import ControlPlaneSettings
from pilotfish.fsutil import atomic_write_text
from pilotfish.runtime.addons import AddonProcess, AddonSpec
from pilotfish.runtime.control_plane_config import control_plane_settings
from pilotfish.runtime.mesh_store import primary_store
from pilotfish.runtime.ports import port_in_use, reserve
from pilotfish.runtime.process import kill_recorded_dir
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.store import FileStore, MemoryStore
from pilotfish.store._render import document_of
from pilotfish.store.composite import CompositeStore

__all__ = [
    "MAX_REPLICAS",
    "PORT_STEP",
    "ControlPlaneReplicas",
    "ReplicaPorts",
    "replica_ports",
    "replica_settings",
    "replica_store",
    "settings_from_json",
    "settings_to_json",
]

MAX_REPLICAS = 3
PORT_STEP = 100
REGISTRATIONS_FILE = "registrations.yaml"

log = logging.getLogger("pilotfish.runtime.replicas")


@dataclass(frozen=True, slots=True)
class ReplicaPorts:
    xds: int
    http: int
    secure: int
    xds_mtls: int


def replica_ports(s: RuntimeSettings, index: int) -> ReplicaPorts:
    """Replica ``index``'s ports (0: the supervisor's own, as configured)."""
    step = PORT_STEP * index
    return ReplicaPorts(
        s.xds_port + step,
        s.control_plane_port + step,
        s.secure_port + step,
        s.xds_mtls_port + step,
    )


def replicas_dir(s: RuntimeSettings) -> Path:
    return s.state_dir / "replicas"


def registrations_dir(s: RuntimeSettings) -> Path:
    return replicas_dir(s) / "registrations"


def replica_settings(s: RuntimeSettings, bridge_ip: str, index: int) -> ControlPlaneSettings:
    """Replica ``index``'s control-plane settings: replica 1's with its own ports."""
    ports = replica_ports(s, index)
    return dataclasses.replace(
        control_plane_settings(s, bridge_ip),
        xds_port=ports.xds,
        http_port=ports.http,
        secure_port=ports.secure,
        xds_mtls_port=ports.xds_mtls,
    )


# -- the runtime settings, across a process boundary --------------------------------


def settings_to_json(s: RuntimeSettings) -> str:
    doc = {f.name: getattr(s, f.name) for f in dataclasses.fields(s)}
    doc["state_dir"] = str(s.state_dir)
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def settings_from_json(text: str) -> RuntimeSettings:
    doc: dict[str, Any] = json.loads(text)
    known = {f.name for f in dataclasses.fields(RuntimeSettings)}
    doc = {k: v for k, v in doc.items() if k in known}
    doc["state_dir"] = Path(doc["state_dir"])
    # JSON has lists; the settings' sequences are tuples (frozen, hashable).
    doc = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return RuntimeSettings(**doc)


# -- the supervisor's side ----------------------------------------------------------


class ControlPlaneReplicas:
    """Replicas 2..N of a mesh's control plane, and the registrations they read."""

    def __init__(self, settings: RuntimeSettings, host_for_pods: str) -> None:
        self.settings = settings
        self._host = host_for_pods
        self._count = max(1, settings.control_plane_replicas)
        self.processes: list[AddonProcess] = []
        self._mirror: asyncio.Task[None] | None = None
        # The replicas' ports are fixed offsets of replica 1's, not drawn by
        # ``free_port``: keep it from handing them to this mesh's pods and gateways.
        reserve(
            port for i in self.extra for port in dataclasses.astuple(replica_ports(settings, i))
        )

    @property
    def extra(self) -> range:
        """Indexes of the replicas this object runs (1..N-1)."""
        return range(1, self._count)

    def addresses(self, port: Callable[[ReplicaPorts], int]) -> list[str]:
        """``host:port`` of each extra replica, ``port`` picking which (e.g. xDS mTLS)."""
        return [f"{self._host}:{port(replica_ports(self.settings, i))}" for i in self.extra]

    async def start(self, registrations: MemoryStore, bridge_ip: str) -> None:
        """Write the shared inputs, start every extra replica, wait until each is ready."""
        if not self.extra:
            return
        s = self.settings
        registrations_dir(s).mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_text(replicas_dir(s) / "settings.json", settings_to_json(s), mode=0o600)
        _write_registrations(registrations, s)
        self._mirror = asyncio.create_task(
            _mirror(registrations, s), name="pilotfish-replica-registrations"
        )
        for index in self.extra:
            ports = replica_ports(s, index)
            argv = (
                sys.executable,
                "-m",
                "pilotfish.runtime.control_plane_replicas",
                "--settings",
                str(replicas_dir(s) / "settings.json"),
                "--index",
                str(index),
                "--bridge-ip",
                bridge_ip,
            )
            url = f"http://127.0.0.1:{ports.http}"
            name = f"control-plane-{index + 1}"
            # A replica an earlier supervisor left running (it crashed) holds the
            # ports and would answer the readiness check for ours: it goes first.
            # Its proxies are served by replica 1 meanwhile.
            kill_recorded_dir(s.work_dir / name)
            busy = [p for p in dataclasses.astuple(ports) if port_in_use(p, self._host)]
            if busy:
                # Said at once: the replica would only exit and be restarted until
                # the readiness deadline.
                raise RuntimeError(
                    f"{name}'s ports are replica 1's + {PORT_STEP * index}; in use: "
                    + ", ".join(map(str, busy))
                )
            spec = AddonSpec(name, argv, f"{url}/ready", url, replicas_dir(s) / name)
            process = AddonProcess(spec, s.work_dir / name, s.log_dir / f"{name}.log")
            await process.start()
            self.processes.append(process)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for process in self.processes:
                await _wait_ready(process, session, s.ready_timeout)

    async def stop(self) -> None:
        task, self._mirror = self._mirror, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)
        self.processes = []


async def _wait_ready(process: AddonProcess, session: aiohttp.ClientSession, limit: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await process.ready(session):
        if loop.time() >= deadline:
            raise RuntimeError(
                f"{process.spec.name} did not become ready within {limit:g}s "
                f"(see {process.log_path})"
            )
        await asyncio.sleep(0.1)


def _write_registrations(store: MemoryStore, s: RuntimeSettings) -> None:
    docs = [document_of(r) for r in sorted(store.list(), key=lambda r: r.key)]
    text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
    atomic_write_text(registrations_dir(s) / REGISTRATIONS_FILE, text, mode=0o600)


async def _mirror(store: MemoryStore, s: RuntimeSettings) -> None:
    seen = store.revision
    while True:
        seen = await store.wait_for_change(seen)
        try:
            _write_registrations(store, s)
        except OSError as exc:  # the next change tries again
            log.error("cannot write the replicas' registrations: %s", exc)


# -- the replica's side -------------------------------------------------------------


def replica_store(settings: ControlPlaneSettings, registrations: Path) -> CompositeStore:
    """What a replica serves: the store users write to, as replica 1 builds it (the
    config files, or the shared etcd), under the mirrored registrations."""
    overlay = FileStore((str(registrations),), poll_interval=settings.poll_interval)
    return CompositeStore(primary_store(settings), [overlay])


async def _serve(settings: ControlPlaneSettings, registrations: Path) -> None:
    cp = ControlPlane(settings, store=replica_store(settings, registrations))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await cp.start()
    log.info(
        "control-plane replica ready: xDS %d, xDS mTLS %d, CA %d, HTTP %d",
        cp.xds_port,
        cp.xds_mtls_port,
        cp.secure_port,
        cp.http_port,
    )
    try:
        await stop.wait()
    finally:
        await cp.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One extra control-plane replica of a mesh.")
    parser.add_argument("--settings", required=True, type=Path)
    parser.add_argument("--index", required=True, type=int)
    parser.add_argument("--bridge-ip", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runtime = settings_from_json(args.settings.read_text(encoding="utf-8"))
    settings = replica_settings(runtime, args.bridge_ip, args.index)
    asyncio.run(_serve(settings, registrations_dir(runtime)))


if __name__ == "__main__":
    main()
