"""Node mode: a host that runs pods against remote control planes (the kubelet's role).

Theory of operation. ``pilotfish up --control-plane URL[,URL...] --api-token-file
FILE --node-name NAME PATHS`` runs ``MeshRuntime`` with its control-plane
steps replaced; pods are run exactly as ``up`` runs them (netns on the node's
bridge, capture, sandboxed sidecar, readiness), nothing else is:

- **No local control plane, CA, gateways or addons.** ``start`` asks every
  URL for its node configuration (``remote_control_plane``): each replica's
  xDS-over-mTLS and CA ports on its host, the trust domain and the service
  range. Every sidecar is given every replica's addresses, as replicas'
  agents are on one host, and fails over between them the same way.
- **Identity.** Before a sidecar starts, the node asks the control plane for
  a join token scoped to the pod's namespace and service account
  (``POST /pilotfish/v1/jointokens``, the admin API token), valid
  ``JOIN_TOKEN_TTL_S``, and hands it to the pod's agent with the mesh root
  from the same answer. The agent spends it on its first CSR and keeps the
  renewal token the CA returns (as ``pilotfish join`` does), so the node has
  no CA directory and holds no signing key.
- **Workloads** come from PATHS only (a local file store, watched), never from
  the control plane: what a node runs is its own choice, as a kubelet runs
  the pods bound to it.
- **Endpoints.** Ready pods are registered as WorkloadEntries in the local
  in-memory store as ``up`` does; ``node_registrations`` mirrors them to the
  control planes' API as ``<pod>-<node>``, annotated with the node, so every
  replica serves them. At start the node deletes entries it left earlier; on
  stop it withdraws its entries before stopping the pods.
- **Names.** Services and ServiceEntries are polled from the API every
  ``SERVICES_POLL_S``; the registry is built from them with the remote
  service range (``registry.build``), so the VIPs in the pods' hosts files
  are the ones the control planes' listeners match.

Not in node mode: ambient or out-of-mesh pods (every pod gets a sidecar),
Gateway API deployments, adoption of a crashed node's pods (a restarted node
starts its pods afresh), ``pilotfish status`` (the node serves no API).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pilotfish.agent.launch import AgentIdentity
from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.controlplane.api_token import ApiTokenError, read_token_file
from pilotfish.model.ambient import DATAPLANE_SIDECAR
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.build import build_registry
from pilotfish.runtime.ipam import Ipam
from pilotfish.runtime.isolation import write_owned
from pilotfish.runtime.mesh import MeshRuntime, RuntimeStartError
from pilotfish.runtime.node_registrations import NodeRegistrations
from pilotfish.runtime.pod import PodSpec
from pilotfish.runtime.remote_control_plane import NodeConfig, RemoteControlPlane, RemoteError
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.runtime.settings_checks import node_mode_problem
from pilotfish.runtime.state import MeshState
from pilotfish.store import CompositeStore, FileStore, MemoryStore, Store

__all__ = ["JOIN_TOKEN_TTL_S", "NodeRuntime", "node_mode_problem"]

log = logging.getLogger("pilotfish.runtime.node")

JOIN_TOKEN_TTL_S = 300.0  # a pod's agent spends it within seconds of being started
SERVICES_POLL_S = 1.0
_SERVICE_LISTS = ("/api/v1/services", "/apis/networking.istio.io/v1/serviceentries")


def _service_resource(item: dict[str, Any]) -> Resource | None:
    """A Service or ServiceEntry document from the API as a resource (None: unreadable)."""
    doc = {k: v for k, v in item.items() if k != "status"}
    meta = {k: v for k, v in (doc.get("metadata") or {}).items() if k != "resourceVersion"}
    result = load_text(json.dumps({**doc, "metadata": meta}), "<control plane>")
    return result.resources[0] if result.ok and result.resources else None


class NodeRuntime(MeshRuntime):
    """``MeshRuntime`` whose control plane is remote; see the module docstring."""

    def __init__(
        self, settings: RuntimeSettings, progress: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(settings, progress)
        try:
            token = read_token_file(Path(str(settings.remote_token_file)))
        except (FileNotFoundError, ApiTokenError) as exc:
            raise RuntimeStartError(f"--api-token-file: {exc}") from None
        self.remote = RemoteControlPlane(settings.remote_control_planes, token)
        self.node: NodeConfig | None = None
        self._local = FileStore(settings.manifests, poll_interval=0.5)
        self._services = MemoryStore()
        self._store = CompositeStore(self._local, [self._services])
        self.publisher = NodeRegistrations(self.registrations, self.remote, settings.node_name)
        self._services_version = ""
        self._tasks: list[asyncio.Task[None]] = []

    # -- what replaces the local control plane ------------------------------------

    def _restorable(self, previous: MeshState | None) -> Ipam | None:
        return None  # a node starts its pods afresh (its entries are re-registered)

    async def _start_control_plane(self) -> None:
        s = self.settings
        try:
            self.node = await self.remote.discover(min(30.0, s.ready_timeout))
            await self._local.start()
            await self._poll_services()
            stale = await self.publisher.remove_stale()
        except RemoteError as exc:
            raise RuntimeStartError(str(exc)) from None
        if stale:
            self._progress(f"removed {stale} WorkloadEntries an earlier run of this node left")
        self._state.control_plane = ",".join(r.url for r in self.node.replicas)
        self._save()
        self._tasks = [
            asyncio.create_task(self.publisher.run(), name="pilotfish-node-registrations"),
            asyncio.create_task(self._follow_services(), name="pilotfish-node-services"),
        ]
        self._progress(
            f"node {s.node_name}: control planes {self.node.xds_addresses} "
            f"(trust domain {self.node.trust_domain})"
        )

    def _config_store(self) -> Store:
        return self._store

    async def _issue_identity(self, namespace: str, service_account: str, owner: str) -> None:
        grant = await self.remote.join_token(namespace, service_account, JOIN_TOKEN_TTL_S)
        uid, gid = self._prepare_proxy_dir(owner)
        write_owned(self._token_file(owner), str(grant["token"]).encode("ascii"), 0o600, uid, gid)
        root = str(grant.get("rootCert") or "").encode("ascii")
        write_owned(self._proxy_dir(owner) / "root-cert.pem", root, 0o644, uid, gid)

    def _identity(self, owner: str) -> AgentIdentity | None:
        assert self.node is not None
        return AgentIdentity(
            ca_address=self.node.ca_addresses,
            xds_secure_address=self.node.xds_addresses,
            ca_token_file=str(self._token_file(owner)),
            root_cert_file=str(self._proxy_dir(owner) / "root-cert.pem"),
            trust_domain=self.node.trust_domain,
            cert_ttl=f"{self.settings.cert_ttl_seconds}s",
        )

    @property
    def xds_address(self) -> str:
        assert self.node is not None
        return self.node.xds_addresses  # mTLS only: a node has no plain-text way in

    def _dataplane_of(self, spec: PodSpec) -> str:
        if super_mode := self._asked_mode(spec):
            log.warning(
                "pod %s asks for %s, which a node does not run; it gets a sidecar",
                spec.name,
                super_mode,
            )
        return DATAPLANE_SIDECAR

    @staticmethod
    def _asked_mode(spec: PodSpec) -> str:
        labels, annotations = dict(spec.labels), dict(spec.annotations)
        if labels.get("istio.io/dataplane-mode") == "ambient":
            return "ambient mode"
        if labels.get("sidecar.istio.io/inject") == "false" or (
            annotations.get("sidecar.istio.io/inject") == "false"
        ):
            return "no sidecar"
        return ""

    # -- the parts a node does not run ---------------------------------------------

    def _register_gateway_services(self) -> None:
        pass

    async def _start_gateways(self, adopted: set[str]) -> None:
        self._save()

    async def _start_addons(self) -> None:
        pass

    async def _reconcile_gateways(self) -> None:
        pass

    def _refresh_service_nat(self, snapshot: Snapshot | None = None) -> None:
        pass  # no pod out of the mesh on a node

    # -- following the configuration -----------------------------------------------

    async def _watch(self) -> None:
        seen = self._store.revision
        while True:
            seen = await self._store.wait_for_change(seen)
            try:
                await self.reconcile()
            except Exception:
                log.exception("reconciling pods failed")

    async def _follow_services(self) -> None:
        while True:
            await asyncio.sleep(SERVICES_POLL_S)
            try:
                await self._poll_services()
            except RemoteError as exc:  # Envoy and the hosts files keep the last ones
                log.warning("services: %s", exc)

    async def _poll_services(self) -> None:
        """Replace the remote Services and ServiceEntries when they changed."""
        listed = [await self.remote.list_items(path) for path in _SERVICE_LISTS]
        version = ",".join(v for v, _ in listed)
        if version == self._services_version:
            return
        self._services_version = version
        wanted = {r.key: r for _, items in listed for i in items if (r := _service_resource(i))}
        for key in [r.key for r in self._services.list() if r.key not in wanted]:
            self._services.delete(key)
        self._services.apply_all(list(wanted.values()))  # unchanged ones are kept as is
        self._refresh_names()

    def _refresh_names(self, snapshot: Snapshot | None = None) -> None:
        if self.network is None or self.node is None:
            return
        self._publish_names(
            build_registry(self._services.list(), self.node.domain_suffix, self.node.service_cidr)
        )

    async def stop(self) -> None:
        if self._stopping:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Out of every replica's endpoints before the pods stop serving.
        with contextlib.suppress(RemoteError):
            await self.publisher.withdraw()
        try:
            await super().stop()
        finally:
            await self._local.close()
            await self.remote.close()
