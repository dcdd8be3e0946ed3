"""Which configuration applies to one workload, as the workload page lists it.

Theory of operation: the workload's labels come from its Workload object; the
Services whose selector those labels satisfy are the hosts it serves. A
VirtualService or DestinationRule applies when one of its hosts names such a
Service (short name, ``name.namespace``, or the full cluster domain). Sidecar
and security policies apply by selector: a policy without one covers its whole
namespace, and in the root namespace the whole mesh.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ROOT_NAMESPACE", "applies_to", "served_services"]

ROOT_NAMESPACE = "istio-system"


def _labels_match(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def served_services(
    services: list[dict[str, Any]], namespace: str, labels: dict[str, str]
) -> set[str]:
    """Names of the Services in ``namespace`` that select these labels."""
    names = set()
    for svc in services:
        meta = svc.get("metadata", {})
        selector = (svc.get("spec") or {}).get("selector")
        in_namespace = meta.get("namespace", "default") == namespace
        if in_namespace and selector and _labels_match(selector, labels):
            names.add(str(meta.get("name", "")))
    return names


def _host_names(host: str, config_ns: str, services: set[str], namespace: str) -> bool:
    parts = host.split(".")
    if len(parts) == 1:
        # A short name is resolved in the namespace of the rule that wrote it.
        return config_ns == namespace and parts[0] in services
    return parts[0] in services and parts[1] == namespace


def _selector(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Sidecar":
        return (spec.get("workloadSelector") or {}).get("labels")
    return (spec.get("selector") or {}).get("matchLabels")


def applies_to(
    docs: list[dict[str, Any]], namespace: str, labels: dict[str, str], services: set[str]
) -> list[dict[str, Any]]:
    """The documents (config API form) that apply to the workload, with why."""
    found = []
    for doc in docs:
        meta = doc.get("metadata", {})
        doc_ns = str(meta.get("namespace", "default"))
        spec = doc.get("spec") or {}
        kind = doc.get("kind", "")
        reason = ""
        if kind == "VirtualService":
            hosts = [
                h for h in spec.get("hosts", []) if _host_names(h, doc_ns, services, namespace)
            ]
            reason = f"hosts {', '.join(hosts)}" if hosts else ""
        elif kind == "DestinationRule":
            host = str(spec.get("host", ""))
            reason = f"host {host}" if _host_names(host, doc_ns, services, namespace) else ""
        else:
            selector = _selector(doc)
            in_scope = doc_ns in (namespace, ROOT_NAMESPACE)
            if in_scope and selector and _labels_match(selector, labels):
                reason = "selector " + ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            elif in_scope and not selector:
                reason = "mesh-wide" if doc_ns == ROOT_NAMESPACE else "namespace-wide"
        if reason:
            found.append(
                {"kind": kind, "namespace": doc_ns, "name": meta.get("name", ""), "why": reason}
            )
    return found
