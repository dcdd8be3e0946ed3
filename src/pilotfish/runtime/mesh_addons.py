"""The mesh's addons as a set: which to run, their specs, and Prometheus' targets.

``MeshAddons`` is what the supervisor (``mesh.py``) holds: it builds the
``AddonSpec`` of each enabled addon from the runtime settings, starts them
after the gateways (an addon that cannot start is reported and skipped; the
mesh still comes up), keeps Prometheus' file-discovered targets equal to the
ready pods and the gateways, and stops them with the mesh.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp

from pilotfish.runtime.addons import AddonError, AddonProcess, AddonSpec
from pilotfish.runtime.etcd_addon import etcd_spec
from pilotfish.runtime.prometheus_addon import ScrapeTarget, prometheus_spec, write_targets
from pilotfish.runtime.settings import RuntimeSettings

__all__ = ["MeshAddons", "dashboard_spec"]

log = logging.getLogger("pilotfish.runtime.addons")


def dashboard_spec(
    python: str,
    work_dir: Path,
    port: int,
    *,
    prometheus: str,
    tracing: str,
    control_plane: str,
    token_file: Path,
) -> AddonSpec:
    """The dashboard (``pilotfish dashboard-server``) reading Prometheus, the trace
    store and the control plane's API."""
    listen = f"http://127.0.0.1:{port}"
    argv = (
        python,
        "-m",
        "pilotfish.cli.main",
        "dashboard-server",
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--prometheus",
        prometheus,
        "--tracing",
        tracing,
        "--control-plane",
        control_plane,
        "--token-file",
        str(token_file),
    )
    return AddonSpec("dashboard", argv, f"{listen}/", f"{listen}/", work_dir)


class MeshAddons:
    def __init__(
        self,
        settings: RuntimeSettings,
        progress: Callable[[str], None],
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self._progress = progress
        self._python = python
        self.processes: list[AddonProcess] = []
        self._targets: dict[str, ScrapeTarget] = {}
        self._collector_host = "127.0.0.1"
        self._store: AddonProcess | None = None  # the etcd addon, while it runs

    @property
    def urls(self) -> dict[str, str]:
        running = [self._store] if self._store is not None else []
        return {a.spec.name: a.spec.url for a in (*running, *self.processes)}

    @property
    def _targets_file(self) -> Path:
        return self.settings.addons_dir / "prometheus" / "targets.json"

    def _spec(self, name: str, control_plane: str) -> AddonSpec:
        s = self.settings
        work = s.addons_dir / name
        if name == "etcd":
            return etcd_spec(s.state_dir, work, s.etcd_port)
        if name == "prometheus":
            return prometheus_spec(work, s.prometheus_port, control_plane, s.scrape_interval_s)
        if name == "tracing":
            listen = f"http://127.0.0.1:{s.tracing_port}"
            argv: tuple[str, ...] = (self._python, "-m", "pilotfish.cli.main", "trace-store")
            argv += ("--address", "127.0.0.1", "--port", str(s.tracing_port))
            if self._collector_host != "127.0.0.1":
                # Pods post spans to the bridge; queries stay on loopback too.
                argv += ("--address", self._collector_host)
            return AddonSpec("tracing", argv, f"{listen}/health", listen, work)
        if name == "dashboard":
            return dashboard_spec(
                self._python,
                work,
                s.dashboard_port,
                prometheus=f"http://127.0.0.1:{s.prometheus_port}",
                tracing=f"http://127.0.0.1:{s.tracing_port}",
                control_plane=f"http://{control_plane}",
                token_file=s.api_token_file,
            )
        raise AddonError(f"addon {name}: not available in this build")

    async def start(self, control_plane: str, collector_host: str = "127.0.0.1") -> list[str]:
        """Start every enabled addon; returns the errors of those that could not start.

        ``collector_host`` is where proxies send spans (``runtime_mesh_config``).
        """
        self._collector_host = collector_host
        errors: list[str] = []
        for name in self.settings.enabled_addons:
            if name == "etcd":
                continue  # the store: started before the control plane (``start_store``)
            try:
                proc = await self._start_one(name, control_plane)
            except (AddonError, OSError) as exc:
                log.error("%s", exc)
                errors.append(str(exc))
                continue
            self.processes.append(proc)
        self._write_targets()
        return errors

    async def _start_one(self, name: str, control_plane: str) -> AddonProcess:
        spec = self._spec(name, control_plane)
        proc = AddonProcess(
            spec,
            self.settings.work_dir / f"addon-{name}",
            self.settings.log_dir / f"addon-{name}.log",
        )
        await proc.start()
        self._progress(f"addon {name} at {spec.url}")
        return proc

    async def start_store(self) -> None:
        """Start the etcd addon, when enabled, before the control plane that uses it.

        Unlike a telemetry addon it is required: ``AddonError`` if it cannot start.
        """
        if "etcd" not in self.settings.enabled_addons or self._store is not None:
            return
        try:
            self._store = await self._start_one("etcd", "")
        except OSError as exc:
            raise AddonError(f"addon etcd: {exc}") from exc

    async def stop_store(self) -> None:
        """Stop the etcd addon (after the control plane); its data stays for ``down``."""
        store, self._store = self._store, None
        if store is not None:
            await store.stop()

    async def stop(self) -> None:
        await asyncio.gather(*(a.stop() for a in self.processes), return_exceptions=True)
        self.processes = []

    async def ready(self, session: aiohttp.ClientSession) -> dict[str, bool]:
        every = [*([self._store] if self._store is not None else []), *self.processes]
        answers = await asyncio.gather(*(a.ready(session) for a in every))
        return {a.spec.name: ok for a, ok in zip(every, answers, strict=True)}

    def set_target(self, key: str, target: ScrapeTarget | None) -> None:
        """Add, replace or (``None``) remove one proxy's scrape target."""
        if target is None:
            self._targets.pop(key, None)
        else:
            self._targets[key] = target
        self._write_targets()

    def set_targets(self, targets: Iterable[tuple[str, ScrapeTarget]]) -> None:
        self._targets.update(targets)
        self._write_targets()

    def _write_targets(self) -> None:
        if any(a.spec.name == "prometheus" for a in self.processes):
            write_targets(self._targets_file, self._targets.values())

    def rows(self, ready: dict[str, bool]) -> list[dict[str, Any]]:
        """Status rows for ``pilotfish status``."""
        return [
            {
                "name": a.spec.name,
                "addon": True,
                "url": a.spec.url,
                "ready": ready.get(a.spec.name),
                "pid": a.pid,
                "restarts": a.restarts,
            }
            for a in (*([self._store] if self._store is not None else []), *self.processes)
        ]
