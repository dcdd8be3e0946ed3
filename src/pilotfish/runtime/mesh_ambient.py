"""The ambient-pod steps of ``MeshRuntime`` (see ``runtime.node_proxy``).

Which pods are ambient, the node proxy's process, and a new ambient pod's
enrolment with it; the runtime calls these from its pod and start paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from pilotfish.agent.launch import AgentIdentity
from pilotfish.controlplane.runner import ControlPlane
from pilotfish.model.ambient import (
    DATAPLANE_AMBIENT,
    DATAPLANE_NONE,
    DATAPLANE_SIDECAR,
    NODE_PROXY_NAMESPACE,
    NODE_PROXY_SERVICE_ACCOUNT,
)
from pilotfish.runtime.gateways import GatewayProcess, GatewaySpec
from pilotfish.runtime.isolation import Isolation
from pilotfish.runtime.mesh_addons import MeshAddons
from pilotfish.runtime.network.base import PodAddress
from pilotfish.runtime.node_proxy import AmbientPods, ambient_entry
from pilotfish.runtime.pod_spec import PodSpec
from pilotfish.runtime.prometheus_addon import ScrapeTarget
from pilotfish.runtime.settings import RuntimeSettings
from pilotfish.store import MemoryStore
from pilotfish.translate.ambient.pods import dataplane_mode

__all__ = ["AmbientMixin"]

log = logging.getLogger("pilotfish.runtime")


class AmbientMixin:
    """Ambient steps of ``MeshRuntime``; the attributes below are the runtime's."""

    settings: RuntimeSettings
    cp: ControlPlane | None
    isolation: Isolation | None
    registrations: MemoryStore
    addons: MeshAddons
    gateways: list[GatewayProcess]
    ambient: AmbientPods
    _ambient_pods: set[tuple[str, str]]
    _proxy_drain: float | None
    _progress: Callable[[str], None]

    @property
    def xds_address(self) -> str:
        raise NotImplementedError

    def _register_identity(self, namespace: str, service_account: str, owner: str) -> None:
        raise NotImplementedError

    def _identity(self, owner: str) -> AgentIdentity | None:
        raise NotImplementedError

    def _save(self) -> None:
        raise NotImplementedError

    def _ambient_impossible(self) -> str | None:
        """Why ``--dataplane ambient`` cannot run here, or None."""
        s = self.settings
        if s.mode != "transparent" or not s.mtls or os.geteuid() != 0:
            return (
                "ambient pods need transparent mode, the mesh CA (--mtls) and root: "
                "the node proxy opens listeners inside pods' network namespaces"
            )
        return None

    def _dataplane_of(self, spec: PodSpec) -> str:
        """``sidecar``, ``ambient`` or ``none`` (out of the mesh) for a new pod, from
        its labels and its namespace's (``translate.ambient.pods.dataplane_mode``); a
        mode this runtime cannot give falls back to a sidecar, with a warning."""
        assert self.cp is not None
        namespace_labels = self.cp.snapshot.namespace_labels(spec.namespace)
        mode = dataplane_mode(
            self.settings.dataplane, namespace_labels, dict(spec.labels), dict(spec.annotations)
        )
        transparent = self.settings.mode == "transparent"
        if mode == DATAPLANE_AMBIENT and not (
            transparent and self.settings.mtls and self.isolation is not None
        ):
            log.warning(
                "pod %s asks for ambient mode, which needs transparent mode, "
                "--mtls and root; it runs with a sidecar",
                spec.name,
            )
            return DATAPLANE_SIDECAR
        if mode == DATAPLANE_NONE and not transparent:
            # Explicit mode reaches services only through a sidecar (HTTP_PROXY).
            log.warning(
                "pod %s is out of the mesh by its labels, which needs transparent mode "
                "(services are reached by address); it runs with a sidecar",
                spec.name,
            )
            return DATAPLANE_SIDECAR
        return mode

    def _ca_token(self, namespace: str, service_account: str, owner: str) -> str | None:
        assert self.cp is not None
        return self.cp.register_workload_token(namespace, service_account, owner)

    def _gateway_process(
        self, spec: GatewaySpec, sa: str | None = None, role: str = "gateway", node_name: str = ""
    ) -> GatewayProcess:
        raise NotImplementedError

    def _node_proxy_process(self, spec: GatewaySpec) -> GatewayProcess:
        self._register_identity(spec.namespace, NODE_PROXY_SERVICE_ACCOUNT, spec.name)
        return self._gateway_process(
            spec, NODE_PROXY_SERVICE_ACCOUNT, role="node-proxy", node_name=self.ambient.node
        )

    def _node_proxy_started(self, process: GatewayProcess) -> None:
        spec = process.spec
        if spec.status_port:
            # Started after the addons (with the first ambient pod): join Prometheus'
            # targets now, or its TCP metrics, the ambient edges, are never scraped.
            target = ScrapeTarget(
                f"127.0.0.1:{spec.status_port}", spec.namespace, spec.name, spec.labels
            )
            self.addons.set_target(f"{spec.namespace}/{spec.name}", target)
        self.gateways.append(process)
        self._progress(f"node proxy started for ambient pods ({NODE_PROXY_NAMESPACE})")
        self._save()

    async def _enrol_ambient(
        self, key: tuple[str, str], spec: PodSpec, address: PodAddress
    ) -> None:
        """Register the pod with the node proxy (entry without labels, CA token),
        starting the node proxy if this is the host's first ambient pod."""
        assert address.netns is not None
        self._ambient_pods.add(key)
        self.registrations.apply(
            ambient_entry(spec, address.ip, address.netns, self.ambient.node, ready=False)
        )
        await self.ambient.ensure_started()
        self.ambient.hand_token(spec)
