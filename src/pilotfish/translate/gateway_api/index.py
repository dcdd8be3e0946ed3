"""What the Gateway API converter looks up: classes, Gateways, Services, grants.

One ``ConfigIndex`` is built per conversion from all the resources, so every
lookup (does this Service exist, does a ReferenceGrant allow this reference,
which labels does this Namespace carry) is a dictionary access.

ReferenceGrant semantics (the spec's): a grant lives in the namespace of the
*referenced* object; it allows references from objects of a ``from``
group/kind in a ``from`` namespace to objects of a ``to`` group/kind (and, if
``to.name`` is set, only that name) in the grant's namespace. References within
one namespace never need a grant.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

from pilotfish.api.gateway_api.common import GROUP
from pilotfish.api.gateway_api.gateway import GatewayClassSpec
from pilotfish.api.gateway_api.policies import ReferenceGrantSpec
from pilotfish.api.kinds import api_group
from pilotfish.api.resource import Resource

__all__ = [
    "BUILTIN_CLASSES",
    "GATEWAY_NAME_LABEL",
    "SERVED_CONTROLLERS",
    "ConfigIndex",
    "is_gateway_workload",
]

#: Controllers whose Gateways Pilotfish serves.
SERVED_CONTROLLERS: Final = frozenset(
    {"pilotfish.io/gateway-controller", "istio.io/gateway-controller"}
)
#: Classes served without a GatewayClass object (Istio's built-in class), -> controller.
BUILTIN_CLASSES: Final = {"istio": "istio.io/gateway-controller"}
#: The label every workload serving a Gateway carries (Istio's).
GATEWAY_NAME_LABEL: Final = "gateway.networking.k8s.io/gateway-name"


@dataclass
class ConfigIndex:
    """Lookups over one set of resources."""

    domain_suffix: str
    classes: dict[str, Resource] = field(default_factory=dict)
    services: dict[tuple[str, str], Resource] = field(default_factory=dict)
    secrets: dict[tuple[str, str], Resource] = field(default_factory=dict)
    config_maps: set[tuple[str, str]] = field(default_factory=set)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    grants: dict[str, list[ReferenceGrantSpec]] = field(default_factory=lambda: defaultdict(list))
    #: Every Gateway API Gateway (namespace, name), whoever's class it is.
    gateways: set[tuple[str, str]] = field(default_factory=set)
    #: Gateway namespace/name -> addresses of the workloads labelled to serve it.
    workload_addresses: dict[tuple[str, str], list[str]] = field(
        default_factory=lambda: defaultdict(list)
    )

    @classmethod
    def build(cls, resources: tuple[Resource, ...], domain_suffix: str) -> ConfigIndex:
        index = cls(domain_suffix)
        for res in resources:
            key = (res.namespace, res.name)
            if res.kind == "GatewayClass":
                index.classes[res.name] = res
            elif res.kind == "KubernetesGateway":
                index.gateways.add(key)
            elif res.kind == "Service":
                index.services[key] = res
            elif res.kind == "Secret":
                index.secrets[key] = res
            elif res.kind == "ConfigMap":
                index.config_maps.add(key)
            elif res.kind == "Namespace":
                index.namespace_labels[res.name] = dict(res.metadata.labels)
            elif res.kind == "ReferenceGrant":
                assert isinstance(res.spec, ReferenceGrantSpec)
                index.grants[res.namespace].append(res.spec)
            elif res.kind == "WorkloadEntry":
                index._add_workload(res)
        return index

    def _add_workload(self, entry: Resource) -> None:
        gateway = _gateway_name(entry)
        address = getattr(entry.spec, "address", None)
        if gateway and address:
            self.workload_addresses[(entry.namespace, gateway)].append(str(address))

    def controller_of(self, class_name: str) -> str | None:
        """The controller of a class, or None when no such class is known."""
        found = self.classes.get(class_name)
        if found is not None:
            assert isinstance(found.spec, GatewayClassSpec)
            return found.spec.controller_name
        return BUILTIN_CLASSES.get(class_name)

    default_controller: str = "pilotfish.io/gateway-controller"

    def has_foreign_gateway(self, namespace: str, name: str) -> bool:
        """True for an existing Gateway the converter did not take (another controller's)."""
        return (namespace, name) in self.gateways

    def service_host(self, namespace: str, name: str) -> str:
        return f"{name}.{namespace}.svc.{self.domain_suffix}"

    def has_service(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.services

    def namespace_labels_of(self, namespace: str) -> dict[str, str]:
        # A namespace without a Namespace object still carries Kubernetes' own label.
        labels = {"kubernetes.io/metadata.name": namespace}
        labels.update(self.namespace_labels.get(namespace, {}))
        return labels

    def reference_allowed(
        self,
        from_kind: str,
        from_namespace: str,
        to_group: str,
        to_kind: str,
        to_namespace: str,
        to_name: str,
        from_group: str = GROUP,
    ) -> bool:
        """May an object of ``from_kind`` in ``from_namespace`` refer to this object?"""
        if from_namespace == to_namespace:
            return True
        for grant in self.grants.get(to_namespace, ()):
            if not any(
                f.group == from_group and f.kind == from_kind and f.namespace == from_namespace
                for f in grant.from_
            ):
                continue
            for to in grant.to:
                if to.group == to_group and to.kind == to_kind and to.name in (None, to_name):
                    return True
        return False


def resource_group(res: Resource) -> str:
    return api_group(res.api_version)


def _gateway_name(entry: Resource) -> str:
    labels: dict[str, str] = getattr(entry.spec, "labels", None) or {}
    return entry.metadata.labels.get(GATEWAY_NAME_LABEL) or labels.get(GATEWAY_NAME_LABEL, "")


def is_gateway_workload(entry: Resource) -> bool:
    """Is this WorkloadEntry a workload serving a Gateway API Gateway?"""
    return bool(_gateway_name(entry))
