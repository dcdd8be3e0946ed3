"""The pod steps of ``MeshRuntime``: reconcile Workloads into pods, start and
stop one pod, and follow its readiness into the registry.

Theory of operation. ``reconcile`` compares the pods the store's Workloads
(and the runnable Kubernetes workloads) ask for with the running ones, keyed by
(namespace, pod name) and compared by ``adoption.workload_hash``: changed or
removed ones are stopped first, missing ones started together. Starting a pod
gives it its network (with capture in transparent mode), its identity (a
sidecar's token, or enrolment with the node proxy when ambient), then its
runner. A pod that turns ready becomes a WorkloadEntry in the runtime's
in-memory registrations and a Prometheus target; one that stops being ready
is withdrawn (an ambient pod stays registered without labels, so its node
proxy keeps its listeners while no Service selects it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.model.ambient import (
    DATAPLANE_AMBIENT,
    DATAPLANE_NONE,
    DATAPLANE_SIDECAR,
    HBONE_PORT,
)
from pilotfish.runtime import adoption, secret_volumes
from pilotfish.runtime.container_workloads import Containers
from pilotfish.runtime.image_map import ImageMap
from pilotfish.runtime.isolation import Isolation
from pilotfish.runtime.kube_workloads import images_to_check, not_run_reasons, plan_workloads
from pilotfish.runtime.mesh_addons import MeshAddons
from pilotfish.runtime.mesh_adoption import Pod, net_id
from pilotfish.runtime.network import service_nat
from pilotfish.runtime.network.base import CaptureConfig, PodAddress, PodNetwork
from pilotfish.runtime.network.transparent import TransparentNetwork
from pilotfish.runtime.node_proxy import AmbientPods, ambient_entry
from pilotfish.runtime.pod import PodEnv, PodRunner, PodSpec
from pilotfish.runtime.pod_command import STATUS_PORT
from pilotfish.runtime.pod_spec import PodSpecError
from pilotfish.runtime.prometheus_addon import ScrapeTarget
from pilotfish.runtime.registration import workload_entry
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import MeshState
from pilotfish.runtime.users import UserAllocator
from pilotfish.store import MemoryStore, Store
from pilotfish.translate.security.mtls import TLS_MODE_LABEL

if TYPE_CHECKING:
    from pilotfish.agent.launch import AgentIdentity
    from pilotfish.model.snapshot import Snapshot
    from pilotfish.runtime.podman import Podman

__all__ = ["TLS_MODE_LABEL", "PodsMixin"]


log = logging.getLogger("pilotfish.runtime")

# Said when a pod starts, after its address, unless it has a sidecar.
_MODE_NOTE = {DATAPLANE_AMBIENT: ", ambient", DATAPLANE_NONE: ", out of the mesh"}


class PodsMixin:
    """Pod steps of ``MeshRuntime``; the attributes below are the runtime's."""

    settings: RuntimeSettings
    cp: ControlPlane | None
    network: PodNetwork | None
    isolation: Isolation | None
    registrations: MemoryStore
    addons: MeshAddons
    ambient: AmbientPods
    pods: dict[tuple[str, str], Pod]
    _state: MeshState
    _progress: Callable[[str], None]
    _ambient_pods: set[tuple[str, str]]
    _bridge_ip: str
    _proxy_drain: float | None
    _users: UserAllocator | None
    _not_run: set[str]
    _image_map: ImageMap | None
    _podman: Podman | None
    _containers: Containers
    _reconcile_lock: asyncio.Lock
    _stopping: bool
    # Per pod out of the mesh, the service rules last restored in its netns.
    _service_nat: dict[tuple[str, str], str]

    if TYPE_CHECKING:  # provided by the runtime and its other mixins

        @property
        def xds_address(self) -> str: ...
        def _identity(self, owner: str) -> AgentIdentity | None: ...
        def _register_identity(self, namespace: str, service_account: str, owner: str) -> None: ...
        def _dataplane_of(self, spec: PodSpec) -> str: ...
        async def _enrol_ambient(
            self, key: tuple[str, str], spec: PodSpec, address: PodAddress
        ) -> None: ...
        async def _reconcile_gateways(self) -> None: ...
        def _record_network(self) -> None: ...
        def _refresh_names(self, snapshot: Snapshot | None = None) -> None: ...
        def _save(self) -> None: ...

    def _config_store(self) -> Store:
        """What pods are reconciled from: the control plane's store (a node's own
        manifests in node mode, ``node_mode``)."""
        assert self.cp is not None
        return self.cp.store

    async def _issue_identity(self, namespace: str, service_account: str, owner: str) -> None:
        """Give a new sidecar its one-time CA credential (a node asks remotely)."""
        self._register_identity(namespace, service_account, owner)

    def _desired(self) -> dict[tuple[str, str], tuple[Resource, int]]:
        store = self._config_store()
        out: dict[tuple[str, str], tuple[Resource, int]] = {}
        mapped, _ = plan_workloads(store.list(), self._image_map, self._containers)
        for wl in [*store.list(kind="Workload"), *mapped]:
            replicas = int(getattr(wl.spec, "replicas", 1) or 0)
            for i in range(replicas):
                out[(wl.namespace, f"{wl.name}-{i}")] = (wl, i)
        return out

    async def reconcile(self) -> None:
        """Start, replace and stop pods so they match the Workloads in the store."""
        if self._stopping:
            return
        async with self._reconcile_lock:
            if self._podman is not None:  # before planning reads it
                await self._podman.images.refresh(
                    images_to_check(self._config_store().list(), self._image_map)
                )
            self._report_not_run()
            desired = self._desired()
            # Once per Workload, not per replica.
            hashes = {id(wl): adoption.workload_hash(wl) for wl, _ in desired.values()}
            stale = [
                p
                for key, p in self.pods.items()
                if key not in desired or hashes[id(desired[key][0])] != p.workload_hash
            ]
            for pod in stale:
                self._progress(f"stopping pod {pod.key[1]}")
                await self._stop_pod(pod)
            starts = [
                self._start_pod(key, wl, index)
                for key, (wl, index) in sorted(desired.items())
                if key not in self.pods
            ]
            await asyncio.gather(*starts)
            await self._reconcile_gateways()  # Gateway API Gateways (gateway_deployments)

    def _report_not_run(self) -> None:
        """Name each Kubernetes workload the runtime cannot run, once, with the reason."""
        reasons = not_run_reasons(self._config_store().list(), self._image_map, self._containers)
        for who in sorted(reasons.keys() - self._not_run):
            log.warning("%s %s", who, reasons[who])
            self._progress(f"{who} {reasons[who]}")
        self._not_run = set(reasons)
        self._state.not_run = reasons  # for a detached ``up`` to print

    def _runner(
        self, spec: PodSpec, address: PodAddress, dataplane: str = DATAPLANE_SIDECAR
    ) -> PodRunner:
        """The pod's runner; raises ``PodSpecError`` for ids the pod may not run as."""
        ambient = dataplane == DATAPLANE_AMBIENT
        env = PodEnv(
            address=address,
            mode=self.settings.mode,
            xds_address=self.xds_address,
            log_dir=self.settings.log_dir,
            work_dir=self.settings.work_dir,
            python=sys.executable,
            identity=self._identity(spec.local_id) if dataplane == DATAPLANE_SIDECAR else None,
            isolation=self.isolation,
            ambient=ambient,
            out_of_mesh=dataplane == DATAPLANE_NONE,
            app_user=self._users.user_for(spec) if self._users is not None else None,
            # Mesh config ``defaultConfig.drainDuration``, else the agent's default.
            agent_args=("--drain-duration", str(self._proxy_drain)) if self._proxy_drain else (),
            xds_protocol=self.settings.xds_protocol,
            podman=self._podman,
            volumes=secret_volumes.mounts(spec, self.settings.work_dir / spec.local_id),
        )
        # By (namespace, name): pods of one name may run in several namespaces.
        key = (spec.namespace, spec.name)
        return PodRunner(
            spec,
            env,
            lambda _name, ready: self._on_ready_change(key, ready),
            on_processes_changed=self._save,
        )

    def _refresh_service_nat(self, snapshot: Snapshot | None = None) -> None:
        """Give each pod out of the mesh the registry's cluster IPs (``service_nat``),
        restoring its tables only when they changed."""
        if not isinstance(self.network, TransparentNetwork) or self.cp is None:
            return
        out_of_mesh = [p for p in self.pods.values() if p.dataplane == DATAPLANE_NONE]
        if not out_of_mesh:
            return
        text = service_nat.restore_input(
            service_nat.service_routes((snapshot or self.cp.snapshot).registry)
        )
        for pod in out_of_mesh:
            if self._service_nat.get(pod.key) == text:
                continue
            try:
                self.network.restore_tables(net_id(*pod.key), text)
            except Exception as exc:  # the next snapshot tries again
                log.error("service addresses for pod %s: %s", pod.key[1], exc)
                continue
            self._service_nat[pod.key] = text

    def _write_secret_volumes(self, spec: PodSpec) -> None:
        """The pod's Secret volumes as files (``runtime.secret_volumes``); raises
        ``SecretVolumeError`` when a Secret or key is missing or they cannot be mounted."""
        if not spec.secret_volumes:
            return
        if self._users is None or self.isolation is None:
            raise secret_volumes.SecretVolumeError(
                f"pod {spec.name}: Secret volumes are mounted in the pod's own view of the "
                "file system, which needs the runtime to run as root"
            )
        store = self._config_store()
        lookup = secret_volumes.store_lookup(store)
        user = self._users.user_for(spec)
        pod_dir = self.settings.work_dir / spec.local_id
        config_maps = secret_volumes.store_config_maps(store)
        secret_volumes.materialize(spec, pod_dir, lookup, user.uid, user.gid, config_maps)

    async def _start_pod(self, key: tuple[str, str], workload: Resource, index: int) -> None:
        assert self.network is not None
        namespace, name = key
        capture = None
        if self.settings.mode == "transparent":
            capture = CaptureConfig(exclude_outbound_cidrs=(f"{self._bridge_ip}/32",))
        try:
            spec = PodSpec.from_workload(workload, index)
            if self._users is not None:
                self._users.user_for(spec)  # refused ids fail here, before any network
            self._write_secret_volumes(spec)
        except (PodSpecError, secret_volumes.SecretVolumeError) as exc:
            log.error("pod %s cannot start: %s", name, exc)
            self._progress(f"pod {name} cannot start: {exc}")
            return
        dataplane = self._dataplane_of(spec)
        ambient = dataplane == DATAPLANE_AMBIENT
        if dataplane == DATAPLANE_NONE:
            capture = None  # out of the mesh: nothing of the pod's traffic is captured
        elif ambient and capture is not None:
            # The node proxy's HBONE listener in the pod is reached directly.
            capture = CaptureConfig(
                exclude_inbound_ports=(HBONE_PORT, *capture.exclude_inbound_ports),
                exclude_outbound_cidrs=capture.exclude_outbound_cidrs,
            )
        address = self.network.create_pod(net_id(namespace, name), capture)
        if ambient:
            await self._enrol_ambient(key, spec, address)
        elif dataplane == DATAPLANE_SIDECAR:
            try:
                await self._issue_identity(spec.namespace, spec.service_account, spec.local_id)
            except Exception as exc:  # no credential: the pod cannot start; it says why
                log.error("pod %s: no identity: %s", name, exc)
                self._progress(f"pod {name} cannot start: no identity: {exc}")
                self.network.delete_pod(net_id(namespace, name))
                return
        runner = self._runner(spec, address, dataplane)
        pod = Pod(
            key, adoption.workload_hash(workload), runner, address.ip, address.netns, dataplane
        )
        self.pods[key] = pod
        self._state.pods[f"{namespace}/{name}"] = {
            "name": name,
            "ip": address.ip,
            "netns": address.netns,
            "namespace": namespace,
            "workload": workload.name,
            "spec": spec.to_json(),
            "workload_hash": pod.workload_hash,
            "dataplane": dataplane,
        }
        self._record_network()
        self._refresh_names()
        self._refresh_service_nat()  # before its app starts: it may call a service at once
        self._progress(f"starting pod {name} ({address.ip}{_MODE_NOTE.get(dataplane, '')})")
        try:
            await runner.start()
        except Exception as exc:  # reported through status; the pod stays listed
            log.error("pod %s failed to start: %s", name, exc)
            self._progress(f"pod {name} failed to start: {exc}")

    async def _stop_pod(self, pod: Pod) -> None:
        namespace, name = pod.key
        with contextlib.suppress(KeyError):
            self.registrations.delete(ResourceKey("WorkloadEntry", namespace, name))
        if pod.key in self._ambient_pods:
            self._ambient_pods.discard(pod.key)
            self.ambient.withdraw_token(pod.runner.spec)
        if self.cp is not None:
            self.cp.forget_workload(pod.runner.spec.local_id)
        try:
            await pod.runner.stop()
        finally:
            assert self.network is not None
            self.network.delete_pod(net_id(namespace, name))
            self.pods.pop(pod.key, None)
            self._service_nat.pop(pod.key, None)
            self._state.pods.pop(f"{namespace}/{name}", None)
            self._record_network()

    def _on_ready_change(self, pod_key: tuple[str, str], ready: bool) -> None:
        pod = self.pods.get(pod_key)
        if pod is None:
            return
        spec = pod.runner.spec
        key = ResourceKey("WorkloadEntry", spec.namespace, spec.name)
        if pod_key in self._ambient_pods:
            # Un-ready, an ambient pod stays registered without labels: its node
            # proxy keeps its listeners, no Service selects it.
            assert pod.netns is not None
            entry = ambient_entry(spec, pod.ip, pod.netns, self.ambient.node, ready=ready)
            self.registrations.apply(entry)
            if ready:
                self._progress(f"pod {spec.name} ready (ambient)")
            return
        if ready:
            ports = {p.name: p.container_port for p in spec.ports if p.name}
            labels = dict(spec.labels)
            in_mesh = pod.dataplane == DATAPLANE_SIDECAR
            if self.settings.mtls and in_mesh:
                # The pod's sidecar holds a mesh certificate: callers use mTLS (auto
                # mTLS). A pod out of the mesh is called in plaintext.
                labels[TLS_MODE_LABEL] = "istio"
            self.registrations.apply(
                workload_entry(
                    spec.name,
                    spec.namespace,
                    pod.ip,
                    labels,
                    spec.service_account,
                    ports,
                    spec.workload,
                )
            )
            self._progress(f"pod {spec.name} ready")
            if not in_mesh:
                return  # no agent: nothing serves the merged metrics on its status port
            address = f"{pod.ip}:{STATUS_PORT}"
            target = ScrapeTarget(address, spec.namespace, spec.name, spec.labels)
            self.addons.set_target(f"{spec.namespace}/{spec.name}", target)
        else:
            self.addons.set_target(f"{spec.namespace}/{spec.name}", None)
            with contextlib.suppress(KeyError):
                self.registrations.delete(key)
