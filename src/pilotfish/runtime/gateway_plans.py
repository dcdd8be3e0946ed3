"""Which Gateway API Gateways the local mesh deploys, and as what (pure functions).

Istio's deployment controller gives every Gateway of its class a Deployment,
a ServiceAccount and a Service, all named ``<gateway>-<class>`` (annotations
``gateway.istio.io/name-override`` and ``gateway.istio.io/service-account``
override the names), whose pods carry the label
``gateway.networking.k8s.io/gateway-name: <gateway>``. The local mesh does the
same with one gateway agent per Gateway; this module decides which Gateways
qualify and derives the names, labels and Service ports, so the runtime
(``gateway_deployments``) only starts and stops what a ``DeploymentPlan`` says.

A Gateway is deployed when its class is served here: a GatewayClass whose
``controllerName`` is Pilotfish's or Istio's controller, or the class ``istio``
when no GatewayClass of that name exists (built in, as in Istio). The class
``istio-waypoint`` (Istio's mesh controller, also built in) makes a waypoint
(``translate.ambient.waypoints``): named after the Gateway alone, as Istio
names its waypoint Deployment, ServiceAccount and Service, and run with the
agent's ``waypoint`` role. A Gateway
whose ``spec.addresses`` names a Hostname is served by an existing Service
(Istio calls it unmanaged) and gets no deployment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pilotfish.api.resource import Resource
from pilotfish.model.ambient import WAYPOINT_CLASS, WAYPOINT_CONTROLLER

__all__ = [
    "BUILTIN_CLASS",
    "CONTROLLERS",
    "GATEWAY_CLASS_LABEL",
    "GATEWAY_NAME_LABEL",
    "ISTIO_GATEWAY_NAME_LABEL",
    "STATUS_PORT",
    "DeploymentPlan",
    "plan_deployments",
]

CONTROLLERS = frozenset({"pilotfish.io/gateway-controller", "istio.io/gateway-controller"})
BUILTIN_CLASS = "istio"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
ISTIO_GATEWAY_NAME_LABEL = "istio.io/gateway-name"
GATEWAY_CLASS_LABEL = "gateway.networking.k8s.io/gateway-class-name"
NAME_OVERRIDE = "gateway.istio.io/name-override"
SERVICE_ACCOUNT_OVERRIDE = "gateway.istio.io/service-account"
#: The agent's health port, first port of the Service as Istio's ``status-port``.
STATUS_PORT = 15021
_PORT_NAME_MAX = 63


@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    """One Gateway's deployment: what runs, under which names and labels."""

    namespace: str
    gateway: str  # the Gateway's name
    class_name: str
    name: str  # Deployment and Service name (``<gateway>-<class>``)
    service_account: str
    # The Service's ports, (name, port): ``status-port`` 15021, then one per listener port.
    ports: tuple[tuple[str, int], ...]
    role: str = "gateway"  # or "waypoint"

    @property
    def local_id(self) -> str:
        """Its name on this host (work dir, address owner, netns), like a pod's local id."""
        return self.name if self.namespace == "default" else f"{self.name}.{self.namespace}"

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        return (
            (GATEWAY_CLASS_LABEL, self.class_name),
            (GATEWAY_NAME_LABEL, self.gateway),
            (ISTIO_GATEWAY_NAME_LABEL, self.gateway),
        )

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What the agent's command line depends on: a change means a new agent.

        Listener ports are not in it: listeners reach the running agent over xDS.
        """
        return (self.namespace, self.name, self.service_account, self.role)

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "gateway": self.gateway,
            "class_name": self.class_name,
            "name": self.name,
            "service_account": self.service_account,
            "ports": [list(p) for p in self.ports],
            "role": self.role,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentPlan:
        return cls(
            namespace=str(data["namespace"]),
            gateway=str(data["gateway"]),
            class_name=str(data["class_name"]),
            name=str(data["name"]),
            service_account=str(data["service_account"]),
            ports=tuple((str(n), int(p)) for n, p in data.get("ports", ())),
            role=str(data.get("role", "gateway")),
        )


def served_classes(classes: Iterable[Resource]) -> dict[str, str]:
    """The GatewayClasses this mesh serves, each with the role of its deployments
    (``istio`` and ``istio-waypoint`` unless redefined)."""
    served: dict[str, str] = {}
    defined: set[str] = set()
    for gc in classes:
        defined.add(gc.name)
        controller = str(getattr(gc.spec, "controller_name", ""))
        if controller in CONTROLLERS:
            served[gc.name] = "gateway"
        elif controller == WAYPOINT_CONTROLLER:
            served[gc.name] = "waypoint"
    for name, role in ((BUILTIN_CLASS, "gateway"), (WAYPOINT_CLASS, "waypoint")):
        if name not in defined:
            served[name] = role
    return served


def _unmanaged(spec: Any) -> bool:
    """A Gateway whose addresses name a Hostname uses an existing Service (Istio's rule)."""
    for address in getattr(spec, "addresses", None) or ():
        if str(getattr(address, "type", None) or "IPAddress") == "Hostname":
            return True
    return False


def service_ports(listeners: Iterable[Any]) -> tuple[tuple[str, int], ...]:
    """Istio's Service ports for a Gateway: ``status-port``, then each listener port
    once, named after its first listener (dots become dashes; clashes take ``-<port>``)."""
    ports: list[tuple[str, int]] = [("status-port", STATUS_PORT)]
    used = {"status-port"}
    seen: set[int] = set()
    for index, listener in enumerate(listeners):
        number = int(listener.port)
        if number in seen:
            continue
        seen.add(number)
        name = str(getattr(listener, "name", "") or "").replace(".", "-")[:_PORT_NAME_MAX]
        if not name:
            name = f"{str(getattr(listener, 'protocol', 'tcp')).lower()}-{index}"
        candidate, suffix = name, f"-{number}"
        while candidate in used:
            candidate = name[: _PORT_NAME_MAX - len(suffix)] + suffix
            suffix += "x"
        used.add(candidate)
        ports.append((candidate, number))
    return tuple(ports)


def plan_for(gateway: Resource, served: dict[str, str]) -> DeploymentPlan | None:
    """The deployment of one Gateway API Gateway, or None if this mesh does not deploy it."""
    spec = gateway.spec
    class_name = str(getattr(spec, "gateway_class_name", "") or "")
    if class_name not in served or _unmanaged(spec):
        return None
    role = served[class_name]
    annotations = gateway.metadata.annotations
    default = gateway.name if role == "waypoint" else f"{gateway.name}-{class_name}"
    name = annotations.get(NAME_OVERRIDE) or default
    return DeploymentPlan(
        namespace=gateway.namespace,
        gateway=gateway.name,
        class_name=class_name,
        name=name,
        service_account=annotations.get(SERVICE_ACCOUNT_OVERRIDE) or name,
        ports=service_ports(getattr(spec, "listeners", None) or ()),
        role=role,
    )


def plan_deployments(resources: Iterable[Resource]) -> dict[str, DeploymentPlan]:
    """Every deployment ``resources`` call for, by local id.

    ``resources``: the store's objects (only ``KubernetesGateway`` and
    ``GatewayClass`` are read). Two Gateways that would share a local id (a
    name override) keep the first by namespace and name.
    """
    items = list(resources)
    served = served_classes(r for r in items if r.kind == "GatewayClass")
    plans: dict[str, DeploymentPlan] = {}
    gateways = sorted((r for r in items if r.kind == "KubernetesGateway"), key=lambda r: r.key)
    for gateway in gateways:
        plan = plan_for(gateway, served)
        if plan is not None:
            plans.setdefault(plan.local_id, plan)
    return plans
