"""``exportTo``: which namespaces see a service, VirtualService or DestinationRule.

Istio's rules: an empty list exports to every namespace (``*``, the default);
``.`` is the resource's own namespace; ``~`` (services only) is no namespace;
other entries name namespaces. A resource is visible to a proxy when the
proxy's namespace is among them. Outbound translation (clusters, virtual
hosts, routes, rule lookup) is per proxy namespace already, so visibility only
filters what that translation sees.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish.api.resource import Resource
from pilotfish.registry.model import MeshService

__all__ = ["exported_to", "resource_visible", "service_visible"]


def exported_to(export_to: Iterable[str], owner_namespace: str, client_namespace: str) -> bool:
    """Whether an ``exportTo`` list of a resource in ``owner_namespace`` reaches
    ``client_namespace``."""
    entries = tuple(export_to)
    if not entries:
        return True
    for entry in entries:
        if entry == "*":
            return True
        if entry == "." and client_namespace == owner_namespace:
            return True
        if entry == client_namespace:
            return True
    return False


def service_visible(svc: MeshService, client_namespace: str) -> bool:
    return exported_to(svc.export_to, svc.namespace, client_namespace)


def resource_visible(resource: Resource, client_namespace: str) -> bool:
    """For kinds with ``spec.exportTo`` (VirtualService, DestinationRule, ServiceEntry)."""
    export_to: Iterable[str] = getattr(resource.spec, "export_to", None) or ()
    return exported_to(export_to, resource.namespace, client_namespace)
