"""Service graph and health from Istio's standard metrics.

Theory of operation: Prometheus answers instant vector queries; each sample's
labels name a (source workload -> destination workload) pair. Request rates
split by response code give the error share, histogram quantiles give latency,
and ``connection_security_policy`` says whether the hop was mutual TLS. Samples
are folded into one edge per pair, and nodes are the workloads and services seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEGRADED_ERROR_RATIO",
    "FAILING_ERROR_RATIO",
    "Edge",
    "build_graph",
    "health",
]

# Kiali's default thresholds for the share of 5xx responses.
DEGRADED_ERROR_RATIO = 0.001
FAILING_ERROR_RATIO = 0.10

UNKNOWN = "unknown"


def health(rps: float, error_rps: float) -> str:
    """healthy, degraded, failing, or idle when nothing was served."""
    if rps <= 0:
        return "idle"
    ratio = error_rps / rps
    if ratio >= FAILING_ERROR_RATIO:
        return "failing"
    if ratio >= DEGRADED_ERROR_RATIO:
        return "degraded"
    return "healthy"


@dataclass
class Edge:
    source: str
    source_namespace: str
    target: str
    target_namespace: str
    service: str
    protocol: str = "http"
    rps: float = 0.0
    error_rps: float = 0.0
    mtls: bool = False
    p50_ms: float | None = None
    p99_ms: float | None = None
    tcp_bytes_per_s: float = 0.0
    policies: set[str] = field(default_factory=set)

    def key(self) -> tuple[str, str, str, str]:
        return (self.source_namespace, self.source, self.target_namespace, self.target)

    def to_json(self) -> dict[str, Any]:
        rps = self.rps
        return {
            "id": f"{self.source_namespace}/{self.source}->{self.target_namespace}/{self.target}",
            "source": node_id(self.source_namespace, self.source),
            "target": node_id(self.target_namespace, self.target),
            "service": self.service,
            "protocol": self.protocol,
            "rps": round(rps, 4),
            "error_percent": round(100.0 * self.error_rps / rps, 3) if rps > 0 else 0.0,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "tcp_bytes_per_s": round(self.tcp_bytes_per_s, 2),
            "mtls": self.mtls,
            "health": health(rps, self.error_rps) if self.protocol != "tcp" else "healthy",
        }


def node_id(namespace: str, workload: str) -> str:
    return f"{namespace}/{workload}"


def _value(sample: dict[str, Any]) -> float:
    try:
        number = float(sample["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _edge_for(edges: dict[tuple[str, str, str, str], Edge], labels: dict[str, str]) -> Edge:
    edge = Edge(
        source=labels.get("source_workload") or UNKNOWN,
        source_namespace=labels.get("source_workload_namespace") or UNKNOWN,
        target=labels.get("destination_workload") or UNKNOWN,
        target_namespace=labels.get("destination_service_namespace")
        or labels.get("destination_workload_namespace")
        or UNKNOWN,
        service=labels.get("destination_service_name") or UNKNOWN,
    )
    return edges.setdefault(edge.key(), edge)


def build_graph(
    requests: list[dict[str, Any]],
    p50: list[dict[str, Any]],
    p99: list[dict[str, Any]],
    tcp: list[dict[str, Any]],
) -> dict[str, Any]:
    """Nodes and edges from the ``result`` lists of four Prometheus queries."""
    edges: dict[tuple[str, str, str, str], Edge] = {}
    for sample in requests:
        labels = sample.get("metric", {})
        edge = _edge_for(edges, labels)
        rate = _value(sample)
        edge.rps += rate
        if str(labels.get("response_code", "")).startswith("5"):
            edge.error_rps += rate
        edge.protocol = labels.get("request_protocol") or edge.protocol
        edge.policies.add(labels.get("connection_security_policy", UNKNOWN))
    for results, attr in ((p50, "p50_ms"), (p99, "p99_ms")):
        for sample in results:
            edge = _edge_for(edges, sample.get("metric", {}))
            value = _value(sample)
            setattr(edge, attr, round(value, 2) if value > 0 else None)
    for sample in tcp:
        labels = sample.get("metric", {})
        edge = _edge_for(edges, labels)
        edge.tcp_bytes_per_s += _value(sample)
        if edge.rps == 0:
            edge.protocol = "tcp"
        edge.policies.add(labels.get("connection_security_policy", UNKNOWN))
    for edge in edges.values():
        # A padlock only when every sample of the pair was mutual TLS.
        edge.mtls = edge.policies == {"mutual_tls"}
    nodes: dict[str, dict[str, Any]] = {}
    for edge in edges.values():
        for ns, name in (
            (edge.source_namespace, edge.source),
            (edge.target_namespace, edge.target),
        ):
            nodes.setdefault(
                node_id(ns, name),
                {"id": node_id(ns, name), "kind": "workload", "name": name, "namespace": ns},
            )
        if edge.service != UNKNOWN:
            sid = f"svc:{edge.target_namespace}/{edge.service}"
            nodes.setdefault(
                sid,
                {
                    "id": sid,
                    "kind": "service",
                    "name": edge.service,
                    "namespace": edge.target_namespace,
                    "workload": node_id(edge.target_namespace, edge.target),
                },
            )
    inbound: dict[str, tuple[float, float]] = {}
    for edge in edges.values():
        tid = node_id(edge.target_namespace, edge.target)
        rps, err = inbound.get(tid, (0.0, 0.0))
        inbound[tid] = (rps + edge.rps, err + edge.error_rps)
    for nid, node in nodes.items():
        if node["kind"] == "workload":
            rps, err = inbound.get(nid, (0.0, 0.0))
            node["rps"] = round(rps, 4)
            node["health"] = health(rps, err)
    return {
        "nodes": sorted(nodes.values(), key=lambda n: str(n["id"])),
        "edges": sorted((e.to_json() for e in edges.values()), key=lambda e: str(e["id"])),
    }
