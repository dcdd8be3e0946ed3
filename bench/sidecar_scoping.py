"""Sidecar scoping: what one proxy receives with and without a namespace Sidecar.

Theory of operation: the benchmark's synthetic mesh (``bench.config_gen``: N
services in ``default``, each with four endpoints, two subsets and a
VirtualService) is loaded in-process and handed to the control plane's own
``MeshGenerator``; no process, socket or Envoy is involved. For one sidecar
view (captured layout, as ``pilotfish up`` runs pods) it counts the resources
and serialized bytes of each xDS type:

- CDS, LDS, RDS: every resource the generator composes for the proxy;
- EDS: the load assignments of the proxy's EDS clusters (what Envoy subscribes
  to; the server sends only subscribed names).

Two cases: no Sidecar (every service visible), and a namespace Sidecar whose
``egress.hosts`` lists ``SCOPED`` services (``./svc-0`` ... ``./svc-9``).
The numbers are deterministic (no timing), so one run is enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2
from rich.table import Table

from bench.config_gen import service_documents
from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import build_snapshot
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

__all__ = ["FULL", "QUICK", "ScopingParams", "run_scoping", "scoping_table"]

_TYPES = (
    ("CDS", CLUSTER_TYPE),
    ("EDS", ENDPOINT_TYPE),
    ("LDS", LISTENER_TYPE),
    ("RDS", ROUTE_TYPE),
)


@dataclass(frozen=True, slots=True)
class ScopingParams:
    services: int
    scoped: int = 10  # services listed in the Sidecar's egress hosts


FULL = ScopingParams(services=1000)
QUICK = ScopingParams(services=100)


def _sidecar(scoped: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"egress": [{"hosts": [f"./svc-{i}" for i in range(scoped)]}]},
    }


def _eds_names(clusters: dict[str, bytes]) -> set[str]:
    names = set()
    for name, data in clusters.items():
        msg = cluster_pb2.Cluster()
        any_pb2.Any.FromString(data).Unpack(msg)
        if msg.type == cluster_pb2.Cluster.EDS:
            names.add(msg.eds_cluster_config.service_name or name)
    return names


def _measure(docs: list[dict[str, Any]], view: ProxyView) -> dict[str, Any]:
    started = time.perf_counter()
    result = load_text(yaml.safe_dump_all(docs, sort_keys=False), "bench.yaml")
    if not result.ok:
        raise RuntimeError(next(d.format() for d in result.diagnostics if d.is_error))
    generator = MeshGenerator()
    generator.set_snapshot(build_snapshot(result.resources, 1))
    sets = generator.generate(view)
    out: dict[str, Any] = {}
    eds_wanted = _eds_names(dict(sets[CLUSTER_TYPE].resources))
    for short, type_url in _TYPES:
        resources = dict(sets[type_url].resources)
        if type_url == ENDPOINT_TYPE:
            resources = {n: b for n, b in resources.items() if n in eds_wanted}
        out[short] = {"resources": len(resources), "bytes": sum(map(len, resources.values()))}
    out["total_bytes"] = sum(out[s]["bytes"] for s, _ in _TYPES)
    out["generate_s"] = round(time.perf_counter() - started, 3)
    return out


def run_scoping(params: ScopingParams, log: Callable[..., None] = print) -> dict[str, Any]:
    """Measure both cases; returns ``{"no_sidecar": ..., "sidecar": ..., "reduction": ...}``."""
    docs: list[dict[str, Any]] = []
    for i in range(params.services):
        docs += service_documents(i)
    view = ProxyView(
        "sidecar",
        "default",
        labels=(("app", "client"),),
        interception="REDIRECT",
        bind_ip="0.0.0.0",
    )
    log(f"{params.services} services: translating without a Sidecar")
    plain = _measure(docs, view)
    log(f"with a namespace Sidecar listing {params.scoped} services")
    scoped = _measure([*docs, _sidecar(params.scoped)], view)
    reduction = {
        short: round(1 - scoped[short]["bytes"] / plain[short]["bytes"], 4)
        if plain[short]["bytes"]
        else 0.0
        for short, _ in _TYPES
    }
    return {"no_sidecar": plain, "sidecar": scoped, "bytes_reduction": reduction}


def scoping_table(result: dict[str, Any]) -> Table:
    """Per xDS type: resources and bytes without and with the Sidecar."""
    params = result.get("parameters", {})
    numbers = result.get("results", {})
    table = Table(
        title=f"per-proxy config: {params.get('services')} services, "
        f"Sidecar egress limited to {params.get('scoped')}"
    )
    for col in (
        "type",
        "resources (none)",
        "bytes (none)",
        "resources (Sidecar)",
        "bytes (Sidecar)",
    ):
        table.add_column(col, justify="left" if col == "type" else "right")
    plain, scoped = numbers.get("no_sidecar", {}), numbers.get("sidecar", {})
    for short, _ in _TYPES:
        a, b = plain.get(short, {}), scoped.get(short, {})
        table.add_row(
            short,
            str(a.get("resources", "-")),
            f"{a.get('bytes', 0):,}",
            str(b.get("resources", "-")),
            f"{b.get('bytes', 0):,}",
        )
    table.add_row(
        "total", "", f"{plain.get('total_bytes', 0):,}", "", f"{scoped.get('total_bytes', 0):,}"
    )
    return table
