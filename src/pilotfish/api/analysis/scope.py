"""Which objects ``analyze`` looks at, and how a finding names its object.

Istio never analyzes the Kubernetes system namespaces (``kube-system``,
``kube-public``, ``kube-node-lease`` and kind's ``local-path-storage``:
``inject.IgnoredNamespaces``): objects in them, and Namespace objects of those
names, are dropped before any analyzer runs. ``istio-system`` is analyzed,
with the special cases of the analyzers themselves: injection is never asked
of the ``istio-system`` Namespace, and objects labelled as Istio's own
(``is_istio_control_plane``: an ``istio`` label, or ``release=istio``) are
spared the port-naming and application-UID checks, as in Istio.

Cluster-scoped kinds (Namespace, GatewayClass, IngressClass) have no
namespace; the loader gives every object one (``default``), so findings on
them drop it again: ``Namespace foo``, not ``Namespace default/foo``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Final

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource

__all__ = [
    "CLUSTER_SCOPED_KINDS",
    "IGNORED_NAMESPACES",
    "analyzed",
    "in_scope",
    "is_istio_control_plane",
    "unscoped",
]

IGNORED_NAMESPACES: Final = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage"}
)
CLUSTER_SCOPED_KINDS: Final = frozenset({"Namespace", "GatewayClass", "IngressClass"})


def _own_namespace(kind: str, namespace: str, name: str) -> str:
    """The namespace an object belongs to for scoping (a Namespace: itself)."""
    return name if kind == "Namespace" else namespace


def is_istio_control_plane(r: Resource) -> bool:
    """Istio's ``util.IsIstioControlPlane``: labelled ``istio`` (any value) or ``release=istio``."""
    labels = r.metadata.labels
    return "istio" in labels or labels.get("release") == "istio"


def analyzed(resources: Iterable[Resource]) -> list[Resource]:
    """``resources`` without those of Istio's ignored (system) namespaces."""
    return [
        r
        for r in resources
        if _own_namespace(r.kind, r.namespace, r.name) not in IGNORED_NAMESPACES
    ]


def in_scope(diagnostic: Diagnostic, namespace: str | None) -> bool:
    """Is the finding about an object of ``namespace`` (None: every namespace)?

    Findings without an object (an unreadable file) are always in scope;
    cluster-scoped objects other than Namespaces are too.
    """
    if namespace is None or not diagnostic.kind:
        return True
    if diagnostic.kind in CLUSTER_SCOPED_KINDS and diagnostic.kind != "Namespace":
        return True
    own = _own_namespace(diagnostic.kind, diagnostic.namespace, diagnostic.name)
    return own == namespace


def unscoped(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """The findings, cluster-scoped objects named without a namespace."""
    return [
        replace(d, namespace="") if d.kind in CLUSTER_SCOPED_KINDS and d.namespace else d
        for d in diagnostics
    ]
