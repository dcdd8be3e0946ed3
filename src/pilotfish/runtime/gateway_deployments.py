"""Automated deployment of Gateway API Gateways in the local mesh.

Theory of operation. Whenever the store changes, the runtime hands every
object to ``GatewayDeployer.reconcile``, which compares the deployments the
Gateways call for (``gateway_plans.plan_deployments``) with those running:

- a new one gets an address of its own from the pod network (a network
  namespace on the mesh bridge with no capture in transparent mode, a
  loopback address from the explicit range otherwise: both allocations live
  in the IPAM that the state file keeps), a workload identity from the CA,
  and a gateway agent (``gateways.GatewayProcess``, supervised and restarted
  like the profile's gateways, confined like them under root) bound to that
  address. Its listeners are whatever xDS gives it: the derived Istio Gateway
  selects its ``gateway.networking.k8s.io/gateway-name`` label, and Envoy
  binds each listener port itself on its address (port 80 needs no mapping).
  It is registered as a WorkloadEntry with its labels and address, plus a
  Service ``<gateway>-<class>`` like Istio's deployment controller creates,
  so the converter can put that address in the Gateway's
  ``status.addresses`` and mesh clients can call the gateway by name;
- one whose Gateway went away (or whose class is no longer served) is
  unregistered, its agent stopped and its network removed;
- one whose listeners changed only gets its Service's ports updated: the
  agent picks up the new listeners over xDS, nothing restarts. A change of
  what the agent is started with (its service account) restarts it on the
  same address.

Each deployment is recorded in the state file (``MeshState.gateways`` under
its local id, with its plan) next to its ports, and its agent's pid file is
in its work dir, so ``pilotfish down`` and a next ``up`` remove its processes
and namespace even after a crash. An adopting ``up`` (``mesh_adoption``)
takes over every recorded deployment whose agent still runs and whose
network is still there (``_adopt_deployments``), registering it before the
control plane starts as it does for pods; the first reconcile then keeps it
if its Gateway is unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.runtime import adoption
from pilotfish.runtime.gateway_plans import (
    GATEWAY_NAME_LABEL,
    STATUS_PORT,
    DeploymentPlan,
    plan_deployments,
)
from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.network.base import PodAddress, PodNetwork
from pilotfish.runtime.process import PIDS_FILE, kill_recorded_dir, read_pid_record
from pilotfish.runtime.registration import gateway_service, workload_entry
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.state import MeshState
from pilotfish.runtime.supervised import AdoptedProcess, Supervised
from pilotfish.store import MemoryStore

if TYPE_CHECKING:
    from pilotfish.controlplane.runner import ControlPlane

__all__ = [
    "DEPLOYMENT_KEY",
    "DeployerHooks",
    "DeploymentMixin",
    "GatewayDeployer",
    "recorded_deployments",
]

log = logging.getLogger("pilotfish.runtime.gateway_deployments")

#: The key of a deployed gateway's plan in its ``MeshState.gateways`` entry.
DEPLOYMENT_KEY = "deployment"
_ADMIN_PORT = 15000


@dataclass(frozen=True, slots=True)
class DeployerHooks:
    """What the deployer needs from the runtime (``MeshRuntime`` provides them)."""

    network: Callable[[], PodNetwork | None]
    registrations: MemoryStore
    # The runtime's gateway list: deployed gateways join it, so status, readiness
    # and stop treat them like the profile's.
    gateways: list[GatewayProcess]
    state: MeshState
    # (spec, service account, role: "gateway" or "waypoint")
    make_process: Callable[[GatewaySpec, str, str], GatewayProcess]
    register_identity: Callable[[str, str, str], None]  # (namespace, account, owner)
    forget_identity: Callable[[str], None]
    save: Callable[[], None]
    progress: Callable[[str], None]
    transparent: bool


def recorded_deployments(gateways: Mapping[str, Mapping[str, Any]]) -> dict[str, DeploymentPlan]:
    """The deployed gateways a state file records, by local id."""
    out: dict[str, DeploymentPlan] = {}
    for local_id, entry in gateways.items():
        data = entry.get(DEPLOYMENT_KEY)
        if isinstance(data, dict):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                out[local_id] = DeploymentPlan.from_json(data)
    return out


class GatewayDeployer:
    """Keeps one gateway agent running per deployed Gateway. Use from one event loop."""

    def __init__(self, hooks: DeployerHooks) -> None:
        self._hooks = hooks
        self._running: dict[str, tuple[DeploymentPlan, GatewayProcess]] = {}
        self._refused: set[str] = set()  # said once each

    @property
    def deployed(self) -> dict[str, DeploymentPlan]:
        """local id -> plan of every deployment running now."""
        return {local_id: plan for local_id, (plan, _) in self._running.items()}

    def process(self, local_id: str) -> GatewayProcess | None:
        entry = self._running.get(local_id)
        return entry[1] if entry is not None else None

    async def reconcile(self, resources: Iterable[Resource]) -> None:
        """Start, update and stop deployments so they match the Gateways in ``resources``."""
        desired = plan_deployments(resources)
        for local_id, (plan, _) in list(self._running.items()):
            wanted = desired.get(local_id)
            if wanted is None or wanted.identity != plan.identity:
                await self.stop(local_id)
        for local_id, plan in sorted(desired.items()):
            current = self._running.get(local_id)
            if current is None:
                await self._start(plan)
            elif current[0] != plan:
                self._update(plan, current[1])

    async def _start(self, plan: DeploymentPlan) -> None:
        h = self._hooks
        network = h.network()
        if network is None:
            return
        if plan.role == "waypoint" and not h.transparent:
            if plan.local_id not in self._refused:
                self._refused.add(plan.local_id)
                h.progress(
                    f"waypoint {plan.namespace}/{plan.gateway} not deployed: waypoints "
                    "serve ambient pods, which need transparent mode"
                )
            return
        address = network.create_pod(plan.local_id, None)
        spec = self._spec(plan, address)
        h.register_identity(plan.namespace, plan.service_account, plan.local_id)
        gw = h.make_process(spec, plan.service_account, plan.role)
        self._running[plan.local_id] = (plan, gw)
        h.gateways.append(gw)
        self._record(plan, spec)
        h.progress(f"deploying gateway {plan.namespace}/{plan.gateway} at {address.ip}")
        try:
            await gw.start()
        except OSError as exc:  # restarted by its supervision loop like any exit
            log.error("gateway %s failed to start: %s", plan.local_id, exc)
        self._register(plan, address.ip)
        h.save()

    def adopt(
        self, plan: DeploymentPlan, address: PodAddress, proc: Supervised, restarts: int
    ) -> None:
        """Take over a deployment an earlier supervisor started (its agent still runs on
        ``address``) and register it, as ``_start`` would have."""
        h = self._hooks
        spec = self._spec(plan, address)
        gw = h.make_process(spec, plan.service_account, plan.role)
        gw.adopt(proc, restarts)
        self._running[plan.local_id] = (plan, gw)
        h.gateways.append(gw)
        self._record(plan, spec)
        self._register(plan, address.ip)

    def _spec(self, plan: DeploymentPlan, address: PodAddress) -> GatewaySpec:
        """The agent on its own address: health and admin on Istio's ports there (in its
        own namespace the admin port stays on loopback)."""
        return GatewaySpec(
            plan.local_id,
            plan.namespace,
            plan.labels,
            address.ip,
            _ADMIN_PORT,
            STATUS_PORT,
            agent_name=plan.name,
            exec_prefix=address.exec_prefix,
            health_bind=address.ip,
            admin_address=None if self._hooks.transparent else address.ip,
        )

    def _record(self, plan: DeploymentPlan, spec: GatewaySpec) -> None:
        entry = self._hooks.state.gateways.setdefault(plan.local_id, {})
        entry.update(
            admin_port=spec.admin_port,
            health_port=spec.health_port,
            status_port=0,
            ip=spec.ip,
            **{DEPLOYMENT_KEY: plan.to_json()},
        )

    def _register(self, plan: DeploymentPlan, ip: str) -> None:
        """The gateway's Service and endpoint, as Istio's deployment controller makes them."""
        labels = dict(plan.labels)
        selector = {GATEWAY_NAME_LABEL: plan.gateway}
        ports = [(name, port, port) for name, port in plan.ports]
        regs = self._hooks.registrations
        regs.apply(gateway_service(plan.name, plan.namespace, selector, ports))
        named = {name: port for name, port in plan.ports}
        regs.apply(
            workload_entry(plan.name, plan.namespace, ip, labels, plan.service_account, named)
        )

    def _update(self, plan: DeploymentPlan, gw: GatewayProcess) -> None:
        """Listeners changed: new Service ports; the agent gets its listeners over xDS."""
        self._running[plan.local_id] = (plan, gw)
        self._record(plan, gw.spec)
        self._register(plan, gw.spec.ip)
        self._hooks.save()

    async def stop(self, local_id: str) -> None:
        """Unregister, stop and remove one deployment (its address and namespace too)."""
        h = self._hooks
        plan, gw = self._running.pop(local_id)
        h.progress(f"removing gateway {plan.namespace}/{plan.gateway}")
        for kind in ("WorkloadEntry", "Service"):
            with contextlib.suppress(KeyError):
                h.registrations.delete(ResourceKey(kind, plan.namespace, plan.name))
        h.forget_identity(local_id)
        try:
            await gw.stop()
        finally:
            with contextlib.suppress(ValueError):
                h.gateways.remove(gw)
            network = h.network()
            if network is not None:
                network.delete_pod(local_id)
            h.state.gateways.pop(local_id, None)
            h.state.processes.pop(local_id, None)
            h.save()


class DeploymentMixin:
    """``MeshRuntime``'s side of deployments; the attributes below are the runtime's."""

    settings: RuntimeSettings
    network: PodNetwork | None
    cp: ControlPlane | None
    registrations: MemoryStore
    gateways: list[GatewayProcess]
    _state: MeshState
    _progress: Callable[[str], None]
    _gateway_deployer: GatewayDeployer | None = None

    def _record_network(self) -> None:
        """Record the network's host resources in the state, and save it."""
        raise NotImplementedError

    def _register_identity(self, namespace: str, service_account: str, owner: str) -> None:
        raise NotImplementedError

    def _gateway_process(
        self, spec: GatewaySpec, service_account: str | None = None, role: str = "gateway"
    ) -> GatewayProcess:
        raise NotImplementedError

    @property
    def gateway_deployer(self) -> GatewayDeployer:
        if self._gateway_deployer is None:
            self._gateway_deployer = GatewayDeployer(
                DeployerHooks(
                    network=lambda: self.network,
                    registrations=self.registrations,
                    gateways=self.gateways,
                    state=self._state,
                    make_process=self._gateway_process,
                    register_identity=self._register_identity,
                    forget_identity=self._forget_identity,
                    # Addresses and namespaces come and go with deployments.
                    save=self._record_network,
                    progress=self._progress,
                    transparent=self.settings.mode == "transparent",
                )
            )
        return self._gateway_deployer

    def _forget_identity(self, owner: str) -> None:
        if self.cp is not None:
            self.cp.forget_workload(owner)

    def _adopt_deployments(self, previous: MeshState) -> set[str]:
        """Take over the earlier run's deployed gateways whose agents still run on their
        recorded address (before the control plane starts, like pods); kill the rest.
        Returns the local ids adopted: their addresses and namespaces stay."""
        assert self.network is not None
        adopted: set[str] = set()
        for local_id, plan in recorded_deployments(previous.gateways).items():
            entry = previous.gateways[local_id]
            gw_dir = self.settings.work_dir / local_id
            record = read_pid_record(gw_dir / PIDS_FILE).get(adoption.GATEWAY_AGENT)
            start = adoption.live_start_times({"agent": record}).get("agent") if record else None
            reason = adoption.decide_gateway(entry, record, start)
            proc = AdoptedProcess.adopt(record) if reason is None and record else None
            address = None
            if proc is not None:
                try:
                    address = self.network.adopt_pod(local_id, plan.namespace)
                except ValueError as exc:
                    reason = str(exc)
            if proc is None or address is None:
                self._progress(f"not adopting gateway {local_id}: {reason or 'it exited'}")
                kill_recorded_dir(gw_dir)
                continue
            restarts = int(entry.get("restarts", 0) or 0)
            self.gateway_deployer.adopt(plan, address, proc, restarts)
            adopted.add(local_id)
        return adopted

    async def _reconcile_gateways(self) -> None:
        """Deploy the store's Gateway API Gateways (see the module docstring)."""
        if self.cp is not None:
            await self.gateway_deployer.reconcile(self.cp.store.list())
