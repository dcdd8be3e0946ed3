"""Which workload policies (AuthorizationPolicy, RequestAuthentication) apply to a proxy.

Istio's rules: a policy without a selector applies to every workload of its
namespace, and to every workload of the mesh when that namespace is the root
namespace; a policy with ``selector.matchLabels`` applies to the workloads of
its namespace whose labels include them (a root-namespace policy with a
selector: to matching workloads of every namespace). Policies attached with
``targetRef(s)`` apply to no workload: a waypoint enforces those attached to
it or to the services it serves (``translate.ambient.waypoints``).
"""

from __future__ import annotations

from collections.abc import Mapping

from pilotfish.api.resource import Resource
from pilotfish.model.snapshot import Snapshot

__all__ = ["policy_applies", "selected_policies"]


def policy_applies(
    resource: Resource, root_namespace: str, namespace: str, labels: Mapping[str, str]
) -> bool:
    """Whether policy ``resource`` applies to a workload of ``namespace`` with ``labels``."""
    spec = resource.spec
    if getattr(spec, "target_ref", None) is not None or getattr(spec, "target_refs", None):
        return False
    if resource.namespace not in (namespace, root_namespace):
        return False
    selector = getattr(spec, "selector", None)
    wanted: Mapping[str, str] = getattr(selector, "match_labels", None) or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def selected_policies(
    snapshot: Snapshot, kind: str, namespace: str, labels: Mapping[str, str]
) -> tuple[Resource, ...]:
    """The ``kind`` policies that apply to a workload, root namespace first, then by
    namespace and name (a stable order, so equal inputs give equal output)."""
    root = snapshot.root_namespace
    chosen = [r for r in snapshot.of_kind(kind) if policy_applies(r, root, namespace, labels)]
    chosen.sort(key=lambda r: (r.namespace != root, r.namespace, r.name))
    return tuple(chosen)
