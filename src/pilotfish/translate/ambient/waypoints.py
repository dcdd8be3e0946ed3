"""Which services use a waypoint, and where the waypoints are (Istio's ambient L7).

A waypoint is a Gateway API Gateway of class ``istio-waypoint`` that the runtime
deploys (``runtime.gateway_plans``): an Envoy with its own address, registered
with a Service named after the Gateway whose port 15008 is its HBONE listener.
A Service uses the waypoint its ``istio.io/use-waypoint`` label names, else the
one its Namespace's label names (``none`` opts a Service out of its
namespace's); ``istio.io/use-waypoint-namespace`` names the waypoint's
namespace when it is not the service's. A waypoint's own Service never uses a
waypoint.

``waypoints_of`` is read by the node proxies (which tunnel a caller's traffic
for such a service to the waypoint instead of to its pods) and ``served_by``
by the waypoint itself (which accepts CONNECT streams for those services only).
``waypoint_policies`` are the AuthorizationPolicies the waypoint enforces:
those attached with ``targetRefs`` to its Gateway or to a service it serves.
The waypoint knows each caller as the caller's own node proxy presented it:
its verified identity (principals, namespaces) and its address, handed from
the HBONE listener to the connection manager behind it
(``xds.build.waypoint``), so every rule applies as on a sidecar. All of these
read the snapshot alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilotfish.api.resource import Resource
from pilotfish.ir.security import AuthzPolicy
from pilotfish.model.ambient import HBONE_PORT, WAYPOINT_CLASS, WAYPOINT_CONTROLLER
from pilotfish.model.snapshot import Snapshot
from pilotfish.registry.model import MeshService
from pilotfish.translate.security.authz import translate_policy

__all__ = [
    "USE_WAYPOINT_LABEL",
    "USE_WAYPOINT_NAMESPACE_LABEL",
    "Waypoint",
    "hbone_upstreams",
    "served_by",
    "waypoint_policies",
    "waypoints_of",
]

USE_WAYPOINT_LABEL = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE_LABEL = "istio.io/use-waypoint-namespace"
_NONE = "none"


@dataclass(frozen=True, slots=True)
class Waypoint:
    """A waypoint by its Gateway's namespace and name (also its service account)."""

    namespace: str
    name: str

    def hostname(self, suffix: str = "cluster.local") -> str:
        return f"{self.name}.{self.namespace}.svc.{suffix}"


def _service_labels(snapshot: Snapshot) -> dict[tuple[str, str], Mapping[str, str]]:
    return {(r.namespace, r.name): r.metadata.labels for r in snapshot.of_kind("Service")}


def _waypoint_names(snapshot: Snapshot) -> frozenset[tuple[str, str]]:
    """(namespace, name) of every waypoint Gateway: of the built-in class (unless a
    GatewayClass of that name says otherwise) or of a class of Istio's mesh
    controller, as the runtime deploys them (``runtime.gateway_plans``)."""
    controllers = {
        r.name: str(getattr(r.spec, "controller_name", ""))
        for r in snapshot.of_kind("GatewayClass")
    }
    out = set()
    for r in snapshot.of_kind("KubernetesGateway"):
        name = str(getattr(r.spec, "gateway_class_name", ""))
        controller = controllers.get(name)
        if controller == WAYPOINT_CONTROLLER or (controller is None and name == WAYPOINT_CLASS):
            out.add((r.namespace, r.name))
    return frozenset(out)


def _choose(
    svc: MeshService,
    labels: Mapping[str, str],
    namespace_labels: Mapping[str, str],
    waypoints: frozenset[tuple[str, str]],
) -> Waypoint | None:
    if svc.source_kind != "Service" or (svc.namespace, svc.source_name) in waypoints:
        return None
    for source in (labels, namespace_labels):
        name = source.get(USE_WAYPOINT_LABEL)
        if name:
            if name == _NONE:
                return None
            namespace = source.get(USE_WAYPOINT_NAMESPACE_LABEL) or svc.namespace
            return Waypoint(namespace, name)
    return None


def waypoints_of(snapshot: Snapshot) -> dict[str, Waypoint]:
    """Hostname -> the waypoint of every service that uses one."""
    labels = _service_labels(snapshot)
    waypoints = _waypoint_names(snapshot)
    out: dict[str, Waypoint] = {}
    for hostname, svc in snapshot.registry.services.items():
        found = _choose(
            svc,
            labels.get((svc.namespace, svc.source_name), {}),
            snapshot.namespace_labels(svc.namespace),
            waypoints,
        )
        if found is not None:
            out[hostname] = found
    return out


def served_by(snapshot: Snapshot, waypoint: Waypoint) -> tuple[tuple[str, int], ...]:
    """(hostname, port) of every service port ``waypoint`` carries, sorted."""
    return tuple(
        sorted(
            (hostname, sp.port)
            for hostname, wp in waypoints_of(snapshot).items()
            if wp == waypoint
            for sp in snapshot.registry.services[hostname].ports
        )
    )


def hbone_upstreams(snapshot: Snapshot, waypoint: Waypoint) -> tuple[tuple[str, int], ...]:
    """The waypoint's HBONE addresses (its Service's endpoints on port 15008)."""
    found = snapshot.registry.instances_of(waypoint.hostname(snapshot.domain_suffix), HBONE_PORT)
    return tuple(sorted({(inst.address, HBONE_PORT) for inst in found}))


def _targets(resource: Resource) -> list[tuple[str, str]]:
    spec = resource.spec
    refs = list(getattr(spec, "target_refs", None) or ())
    single = getattr(spec, "target_ref", None)
    if single is not None:
        refs.append(single)
    return [
        (str(r.kind), str(r.name))
        for r in refs
        if not r.namespace or r.namespace == resource.namespace
    ]


def waypoint_policies(
    snapshot: Snapshot, waypoint: Waypoint, served: tuple[tuple[str, int], ...]
) -> dict[tuple[str, int], tuple[AuthzPolicy, ...]]:
    """(hostname, port) -> the AuthorizationPolicies the waypoint enforces for it: those
    of the waypoint's namespace whose ``targetRefs`` name the waypoint's Gateway (every
    service it serves) or the service itself (Istio's attachment for waypoints)."""
    out: dict[tuple[str, int], list[AuthzPolicy]] = {}
    services = snapshot.registry.services
    for resource in sorted(snapshot.of_kind("AuthorizationPolicy"), key=lambda r: r.key):
        targets = _targets(resource)
        if not targets:
            continue
        for host, port in served:
            svc = services.get(host)
            if svc is None:
                continue
            whole = resource.namespace == waypoint.namespace and (
                ("Gateway", waypoint.name) in targets
            )
            own = resource.namespace == svc.namespace and ("Service", svc.source_name) in targets
            if not (whole or own):
                continue
            policy = translate_policy(resource, port)
            if policy is not None:
                out.setdefault((host, port), []).append(policy)
    return {k: tuple(v) for k, v in out.items()}
