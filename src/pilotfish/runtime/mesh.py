"""The local mesh: one supervisor process hosting the control plane, gateways and pods.

Theory of operation. ``MeshRuntime.start()``:

1. removes whatever a crashed earlier run left (from the state file, then by
   name prefix), and writes a fresh state file;
2. sets up the pod network (bridge, or loopback addresses in explicit mode);
3. starts the control plane in-process over the manifests plus
   ``<state-dir>/config`` (where ``pilotfish apply`` writes), layered with an
   in-memory store of live registrations;
4. starts the gateways of the profile;
5. reconciles Workloads into pods: every replica gets its network, its
   sidecar, then its app; a pod that turns ready is registered as a
   WorkloadEntry, one that stops being ready is unregistered;
6. waits until every pod is ready, or fails naming what is not and why.

After that a watch loop keeps pods in line with Workloads as they are applied
or deleted, and keeps pods' service names current. ``stop()`` stops apps
before their sidecars, then gateways, the control plane and the network, and
leaves nothing behind on the host.

Re-adoption (``adoption.py`` decides, this module carries it out). When the
previous supervisor died while its mesh was ready and the settings are the
same, step 1 becomes: restore the pod address allocations, take over (and
watch through pidfds) every recorded pod and gateway whose processes still
run with their recorded start times, kill and forget the rest, probe the
adopted pods once and register the ready ones, all *before* the control
plane starts. The control plane then comes back on the same ports with the
CA's persisted pod tokens; proxies, which kept serving their last
configuration, reconnect by themselves and the first configuration they get
already lists every endpoint they had, so no request fails. Reconcile then
replaces adopted pods whose Workload changed (compared by ``workload_hash``)
and starts the missing ones, as on any change.

A node (``up --control-plane``) is this runtime with the control-plane steps
replaced (``node_mode.NodeRuntime``): the hooks it overrides are
``_start_control_plane``, ``_identity``, ``xds_address`` and the pods' store
and identity hooks of ``mesh_pods``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp
from aiohttp import web

from pilotfish.agent.launch import AgentIdentity
from pilotfish.controlplane.api_token import ApiTokenError
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.model.ambient import (
    DATAPLANE_AMBIENT,
)
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.build import Registry
from pilotfish.runtime import adoption
from pilotfish.runtime.addons import AddonError
from pilotfish.runtime.container_workloads import container_support
from pilotfish.runtime.control_plane_config import control_plane_settings
from pilotfish.runtime.control_plane_replicas import ControlPlaneReplicas
from pilotfish.runtime.gateways import (
    GatewayProcess,
    GatewaySpec,
    egress_registrations,
    gateway_specs,
    ingress_registrations,
)
from pilotfish.runtime.image_map import ImageMap, load_image_map
from pilotfish.runtime.ipam import Ipam
from pilotfish.runtime.isolation import Isolation, copy_public, write_owned
from pilotfish.runtime.mesh_addons import MeshAddons
from pilotfish.runtime.mesh_adoption import AdoptionMixin, Pod
from pilotfish.runtime.mesh_ambient import AmbientMixin
from pilotfish.runtime.mesh_pods import TLS_MODE_LABEL, PodsMixin
from pilotfish.runtime.mesh_store import apply_manifests, primary_store
from pilotfish.runtime.network.base import PodNetwork, ServiceName
from pilotfish.runtime.network.factory import bridge_address, make_network
from pilotfish.runtime.node_proxy import AmbientPods
from pilotfish.runtime.ports import free_port, reserve
from pilotfish.runtime.process import PROXY_DIR
from pilotfish.runtime.prometheus_addon import ScrapeTarget
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import MeshState, process_alive, read_state, write_state
from pilotfish.runtime.status_rows import gateway_row, identities_by_owner, pod_row
from pilotfish.runtime.teardown import clean_leftovers
from pilotfish.runtime.users import UserAllocator
from pilotfish.store import CompositeStore, MemoryStore, StoreError

__all__ = ["TLS_MODE_LABEL", "MeshRuntime", "RuntimeStartError"]

log = logging.getLogger("pilotfish.runtime")

# The agent roles of supervised proxies other than pods' sidecars.
_ROLES: dict[str, Literal["gateway", "node-proxy", "waypoint"]] = {
    "gateway": "gateway",
    "node-proxy": "node-proxy",
    "waypoint": "waypoint",
}


class RuntimeStartError(Exception):
    """The mesh did not come up; the message names what is not ready and why."""


class MeshRuntime(PodsMixin, AmbientMixin, AdoptionMixin):
    def __init__(
        self, settings: RuntimeSettings, progress: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        # Bound later (the ingress listener once its gateway is up): until then a
        # probe would find them free and hand one to a proxy's admin.
        reserve(settings.fixed_ports)
        self._progress = progress or (lambda msg: log.info("%s", msg))
        self.network: PodNetwork | None = None
        self.cp: ControlPlane | None = None
        self.registrations = MemoryStore()
        self.gateways: list[GatewayProcess] = []
        self.pods: dict[tuple[str, str], Pod] = {}
        self.addons = MeshAddons(settings, self._progress)
        # Replicas 2..N of the control plane (their host is set once the network is).
        self.replicas = ControlPlaneReplicas(settings, "127.0.0.1")
        self._state = MeshState(
            pid=os.getpid(),
            mode=settings.mode,
            profile=settings.profile,
            version=adoption.STATE_VERSION,
            run=adoption.run_fingerprint(settings),
        )
        self._watch_task: asyncio.Task[None] | None = None
        self._reconcile_lock = asyncio.Lock()
        self._stopping = False
        self._bridge_ip = ""
        self._proxy_drain: float | None = None
        # Root confines every proxy and app (runtime.isolation); without root there
        # is nobody to confine them to.
        self.isolation = Isolation.for_state_dir(settings.state_dir) if os.geteuid() == 0 else None
        self._users: UserAllocator | None = None
        # Kubernetes workloads already reported as not run (each is named once).
        self._not_run: set[str] = set()
        # Images -> local commands for Kubernetes workloads (``--image-map``).
        self._image_map: ImageMap | None = (
            load_image_map(settings.image_map_file) if settings.image_map_file else None
        )
        # Podman for Kubernetes workloads the map does not cover (``runtime.podman``).
        self._podman, self._containers = container_support(
            settings.container_runtime, settings.mode, settings.state_dir
        )
        # The host's node proxy, started with the first ambient pod (``runtime.node_proxy``).
        self.ambient = AmbientPods(
            self._node_proxy_process,
            self._ca_token,
            self._node_proxy_started,
            free_port,
            self.isolation,
        )
        self._ambient_pods: set[tuple[str, str]] = set()
        self._service_nat: dict[tuple[str, str], str] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if s.dataplane == DATAPLANE_AMBIENT and (why := self._ambient_impossible()):
            raise RuntimeStartError(why)
        s.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # holds the API token
        if self.isolation is not None:
            self.isolation.lock_state_dir()
            self._users = UserAllocator(s.state_dir / "users.json")
        previous = read_state(s.state_file)
        if (
            previous is not None
            and previous.pid != os.getpid()
            and process_alive(previous.pid)
            and previous.phase not in ("stopped", "failed")
        ):
            raise RuntimeStartError(
                f"a mesh is already running from {s.state_dir} (pid {previous.pid}); "
                "run `pilotfish down` first"
            )
        restored = self._restorable(previous)
        if restored is None:
            removed = clean_leftovers(s, previous)
            if removed:
                self._progress(f"removed leftovers of an earlier run: {removed}")
        self._state.started_at = time.time()
        for d in (s.log_dir, s.config_dir, s.work_dir):
            d.mkdir(parents=True, exist_ok=True)

        self.network = make_network(s, restored)
        self.network.setup()
        self._state.bridge = self.settings.bridge if s.mode == "transparent" else ""
        self._record_network()
        self._bridge_ip = bridge_address(self.network)
        self._progress(f"network ready ({s.mode} mode)")

        self._register_gateway_services()
        adopted_gateways: set[str] = set()
        if restored is not None and previous is not None:
            # Before the control plane: its first configuration must already hold
            # the adopted pods' endpoints.
            adopted_gateways = await self._adopt(previous)
        await self._start_control_plane()
        if restored is not None and self.cp is not None and self.cp.has_ca:
            owners = {p.runner.spec.local_id for p in self.pods.values()} | adopted_gateways
            self.cp.retain_workload_tokens(owners)
            await self._restore_identity_records(self.cp.record_issued)
        await self._start_gateways(adopted_gateways)
        await self._start_addons()
        self._watch_task = asyncio.create_task(self._watch(), name="pilotfish-runtime-watch")
        await self.reconcile()
        await self._wait_ready()
        self._state.phase = "ready"
        self._save()

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._state.phase = "stopping"
        self._save()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        pods = list(self.pods.values())
        self._progress(f"stopping {len(pods)} pods")
        await self.addons.stop()
        self._state.addons = {}
        await asyncio.gather(*(self._stop_pod(p) for p in pods), return_exceptions=True)
        await asyncio.gather(*(g.stop() for g in self.gateways), return_exceptions=True)
        await self.replicas.stop()
        if self.cp is not None:
            await self.cp.close()
        await self.addons.stop_store()
        if self.network is not None:
            self.network.teardown()
        self._state.phase = "stopped"
        self._state.pods = {}
        self._state.processes = {}
        self._state.gateways = {}
        self.gateways = []
        self._state.network = type(self._state.network)()
        self._save()
        self._progress("mesh stopped")

    # -- parts -------------------------------------------------------------------

    async def _start_addons(self) -> None:
        """The telemetry addons, scraping the gateways from the start (pods join
        Prometheus' targets as they turn ready)."""
        control_plane = f"127.0.0.1:{self.settings.control_plane_port}"
        await self.addons.start(control_plane, self._host_for_pods())
        self._state.addons = self.addons.urls
        self.addons.set_targets(
            (
                f"{gw.spec.namespace}/{gw.spec.name}",
                ScrapeTarget(
                    f"127.0.0.1:{gw.spec.status_port}",
                    gw.spec.namespace,
                    gw.spec.name,
                    gw.spec.labels,
                ),
            )
            for gw in self.gateways
            if gw.spec.status_port
        )

    async def _start_control_plane(self) -> None:
        settings = control_plane_settings(self.settings, self._bridge_ip)
        self._proxy_drain = settings.mesh.proxy_defaults.drain_seconds
        try:
            await self.addons.start_store()  # the etcd addon, when the store is there
        except AddonError as exc:
            raise RuntimeStartError(str(exc)) from None
        primary = primary_store(settings)
        store = CompositeStore(primary, [self.registrations])
        self.cp = ControlPlane(settings, store=store)
        self.cp.add_snapshot_listener(self._on_snapshot)
        self.cp.add_route("GET", "/runtime/pods", self._http_pods)
        try:
            await self.cp.start()
            if settings.config_store is not None:
                applied = apply_manifests(primary, self.settings.manifests)
                self._progress(f"applied {applied} objects to {settings.config_store}")
        except (ApiTokenError, StoreError) as exc:
            raise RuntimeStartError(str(exc)) from None
        self._state.control_plane = f"http://127.0.0.1:{self.cp.http_port}"
        self._save()
        self._progress(f"control plane ready at {self._state.control_plane}")
        self.replicas = ControlPlaneReplicas(self.settings, self._host_for_pods())
        try:
            await self.replicas.start(self.registrations, self._bridge_ip)
        except (OSError, RuntimeError) as exc:
            await self.replicas.stop()
            raise RuntimeStartError(f"control-plane replicas: {exc}") from None
        for process in self.replicas.processes:
            self._progress(f"{process.spec.name} ready at {process.spec.url}")

    def _register_identity(self, namespace: str, service_account: str, owner: str) -> None:
        """Register a fresh one-time credential for ``owner`` with the CA, in a 0600 file.

        The token is registered with the CA for the pod's namespace and service
        account and handed over in the proxy's own directory (owned by the proxy
        user, visible only inside its sandbox), with the mesh root to verify the
        CA: only that agent can obtain certificates for that identity.
        """
        assert self.cp is not None
        token = self.cp.register_workload_token(namespace, service_account, owner)
        if token is None:
            return
        uid, gid = self._prepare_proxy_dir(owner)
        write_owned(self._token_file(owner), token.encode("ascii"), 0o600, uid, gid)
        root_cert = self._proxy_dir(owner) / "root-cert.pem"
        copy_public(self.settings.ca_dir / "root-cert.pem", root_cert, uid, gid)

    def _prepare_proxy_dir(self, owner: str) -> tuple[int, int]:
        """The proxy's own directory, owned by the proxy user; its (uid, gid), -1: as is."""
        proxy_dir = self._proxy_dir(owner)
        if self.isolation is None:
            proxy_dir.mkdir(parents=True, exist_ok=True)
            return -1, -1
        self.isolation.prepare_proxy_dir(proxy_dir)
        return self.isolation.proxy_uid, self.isolation.proxy_gid

    def _proxy_dir(self, owner: str) -> Path:
        return self.settings.work_dir / owner / PROXY_DIR

    def _token_file(self, owner: str) -> Path:
        return self._proxy_dir(owner) / "ca-token"

    def _identity(self, owner: str) -> AgentIdentity | None:
        """The agent flags that give a proxy its workload identity (None without the CA)."""
        s = self.settings
        if not s.mtls:
            return None
        cp, host = self.cp, self._host_for_pods()
        ca_port = cp.secure_port if cp is not None else s.secure_port
        xds_port = cp.xds_mtls_port if cp is not None else s.xds_mtls_port
        return AgentIdentity(
            ca_address=",".join(
                [f"{host}:{ca_port}", *self.replicas.addresses(lambda p: p.secure)]
            ),
            xds_secure_address=",".join(
                [f"{host}:{xds_port}", *self.replicas.addresses(lambda p: p.xds_mtls)]
            ),
            ca_token_file=str(self._token_file(owner)),
            root_cert_file=str(self._proxy_dir(owner) / "root-cert.pem"),
            trust_domain=s.trust_domain,
            cert_ttl=f"{s.cert_ttl_seconds}s",
        )

    def _host_for_pods(self) -> str:
        return self._bridge_ip if self.settings.mode == "transparent" else "127.0.0.1"

    @property
    def xds_address(self) -> str:
        """Where proxies open ADS: the mTLS port whenever the mesh CA runs.

        Adopted proxies were started against the configured port: it never changes.
        """
        s, cp = self.settings, self.cp
        if s.mtls:
            port = cp.xds_mtls_port if cp is not None else s.xds_mtls_port
            more = self.replicas.addresses(lambda p: p.xds_mtls)
        else:
            port = cp.xds_port if cp is not None else s.xds_port
            more = self.replicas.addresses(lambda p: p.xds)
        return ",".join([f"{self._host_for_pods()}:{port}", *more])

    # -- gateways ------------------------------------------------------------------

    def _gateway_specs(self, recorded: dict[str, dict[str, Any]]) -> list[GatewaySpec]:
        """The profile's gateways; ports recorded by an adopted run are kept."""
        return gateway_specs(self.settings, self._host_for_pods(), recorded, free_port)

    def _register_gateway_services(self) -> None:
        """The egress gateway's Service and endpoint (demo profile); static, so they are
        registered before the control plane's first configuration."""
        if self.settings.profile == "demo":
            for resource in egress_registrations(self._host_for_pods()):
                self.registrations.apply(resource)
        if self.settings.profile != "minimal":
            for resource in ingress_registrations():
                self.registrations.apply(resource)

    def _gateway_process(
        self, spec: GatewaySpec, sa: str | None = None, role: str = "gateway", node_name: str = ""
    ) -> GatewayProcess:
        """A supervised agent: a gateway, a waypoint or (``node_name``) the node proxy."""
        sa = sa or f"{spec.name}-service-account"
        s = self.settings
        return GatewayProcess(
            spec,
            self.xds_address,
            s.log_dir,
            s.work_dir,
            sys.executable,
            identity=self._identity(spec.name),
            service_account=sa,
            on_processes_changed=self._save,
            drain_duration=self._proxy_drain or 2.0,
            isolation=self.isolation,
            xds_protocol=s.xds_protocol,
            role=_ROLES[role],
            node_name=node_name,
        )

    async def _start_gateways(self, adopted: set[str]) -> None:
        s = self.settings
        for spec in self._gateway_specs({}):
            if spec.name in adopted:
                continue
            self._register_identity(spec.namespace, f"{spec.name}-service-account", spec.name)
            gw = self._gateway_process(spec)
            self.gateways.append(gw)
            await gw.start()
        if s.profile != "minimal":
            self._state.ingress = f"http://127.0.0.1:{s.ingress_port}"
        self._save()

    # -- pods: reconcile, start, stop, readiness (``mesh_pods.PodsMixin``) --------

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while True:
                waiting = [
                    f"{p.key[1]}: {p.runner.status().message or p.runner.status().phase}"
                    for p in self.pods.values()
                    if not _settled(p.runner.status())
                ]
                for gw in self.gateways:
                    if not await gw.ready(session):
                        waiting.append(f"{gw.spec.name}: gateway not ready (log {gw.log_path})")
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    self._state.phase = "failed"
                    self._state.message = "; ".join(waiting)
                    self._save()
                    raise RuntimeStartError("not ready in time: " + "; ".join(waiting))
                await asyncio.sleep(0.2)

    async def _watch(self) -> None:
        assert self.cp is not None
        seen = self.cp.store.revision
        while True:
            seen = await self.cp.store.wait_for_change(seen)
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling pods failed")

    # -- names, state, status --------------------------------------------------------

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self._refresh_names(snapshot)
        self._refresh_service_nat(snapshot)

    def _refresh_names(self, snapshot: Snapshot | None = None) -> None:
        if self.network is None or self.cp is None:
            return
        self._publish_names((snapshot or self.cp.snapshot).registry)

    def _publish_names(self, registry: Registry) -> None:
        """The pods' hosts files: every service with an address, and the pods."""
        assert self.network is not None
        names = [
            ServiceName(svc.hostname, svc.namespace, svc.addresses[0])
            for svc in registry.services.values()
            if svc.addresses
        ]
        pods = {(name if ns == "default" else f"{name}.{ns}"): ns for ns, name in self.pods}
        self.network.update_names(names, pods)

    def _record_network(self) -> None:
        if self.network is not None:
            resources = getattr(self.network, "resources", None)
            if callable(resources):
                self._state.network = resources()
        self._save()

    def _save(self) -> None:
        self._sync_state()
        write_state(self.settings.state_file, self._state)

    def _sync_state(self) -> None:
        """Copy what adoption needs from the live pods and gateways into the state."""
        ipam = getattr(self.network, "ipam", None)
        if isinstance(ipam, Ipam):
            self._state.ipam = ipam.to_json()
        for (namespace, name), pod in self.pods.items():
            entry = self._state.pods.get(f"{namespace}/{name}")
            if entry is None:
                continue
            status = pod.runner.status()
            entry.update(
                name=name,
                phase=status.phase,
                message=status.message,
                restarts=status.restarts,
                started_at=status.started_at,
                app_ports={str(k): v for k, v in pod.runner.app_ports.items()},
            )
        for gw in self.gateways:
            self._state.gateways.setdefault(gw.spec.name, {}).update(
                {
                    "admin_port": gw.spec.admin_port,
                    "health_port": gw.spec.health_port,
                    "status_port": gw.spec.status_port,
                    "restarts": gw.restarts,
                }
            )
            if gw.pid is not None:
                self._state.processes[gw.spec.name] = gw.pid

    def pod_statuses(
        self, gateways_ready: Mapping[str, bool] | None = None
    ) -> list[dict[str, Any]]:
        """Rows of ``/runtime/pods``: pods, then gateways (``gateways_ready``: by name)."""
        identities = identities_by_owner(self.cp.issued_identities() if self.cp else [])
        ready = gateways_ready or {}
        rows = [
            pod_row(
                pod.runner.status(),
                identities.get(pod.runner.spec.local_id),
                pod.dataplane,
            )
            for pod in sorted(self.pods.values(), key=lambda p: p.key)
        ]
        rows += [
            gateway_row(gw, ready.get(gw.spec.name), identities.get(gw.spec.name))
            for gw in self.gateways
        ]
        return rows

    async def _http_pods(self, request: web.Request) -> web.Response:
        timeout = aiohttp.ClientTimeout(total=1)
        gateways = list(self.gateways)  # deployments may come and go meanwhile
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            answers = await asyncio.gather(*(gw.ready(session) for gw in gateways))
        ready = {gw.spec.name: ok for gw, ok in zip(gateways, answers, strict=True)}
        return web.json_response(
            {
                "phase": self._state.phase,
                "mode": self.settings.mode,
                "pods": self.pod_statuses(ready),
            }
        )


def _settled(status: Any) -> bool:
    return bool(status.ready) or status.phase in ("Succeeded", "Failed")
