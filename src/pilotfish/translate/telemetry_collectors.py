"""Where a proxy's spans go: the collector cluster of each tracing provider.

Envoy's tracers name an upstream cluster and Envoy rejects the listener when
that cluster is missing, so every proxy whose connection managers trace gets
the clusters of its providers in its CDS:

- a provider whose service is a mesh service (``jaeger.observability.svc...``
  with that port) uses the service's outbound cluster, which the proxy
  already has, and spans travel like any mesh traffic;
- any other collector (an address, or a host name outside the mesh, such as
  the runtime's own trace store on the bridge or loopback) gets a cluster of
  its own: STATIC for an IP address, STRICT_DNS for a name. OTLP collectors
  speak gRPC, so theirs is HTTP/2;
- a tracer with span reporting disabled names ``ir.SPAN_SINK_CLUSTER``, a
  STATIC cluster with no endpoints, so its spans go nowhere while trace
  context still propagates (``xds.build.tracing``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from pilotfish import ir
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.names import outbound_cluster

__all__ = ["collector_clusters", "in_mesh"]


def in_mesh(snapshot: Snapshot, tracing: ir.Tracing | None) -> ir.Tracing | None:
    """``tracing`` with its provider pointed at the mesh service's outbound
    cluster when the collector is a mesh service."""
    if tracing is None:
        return None
    p = tracing.provider
    svc = snapshot.registry.services.get(p.address)
    if svc is None or not any(sp.port == p.port for sp in svc.ports):
        return tracing
    provider = replace(p, cluster=outbound_cluster(p.address, p.port))
    return replace(tracing, provider=provider)


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _sink(http2: bool) -> ir.Cluster:
    # OTLP's gRPC client wants an HTTP/2 cluster even when it has no host.
    return ir.Cluster(
        name=ir.SPAN_SINK_CLUSTER,
        discovery="STATIC",
        connect_timeout_ms=1_000,
        http2=http2,
        direction="other",
    )


def collector_clusters(
    snapshot: Snapshot, tracings: tuple[ir.Tracing | None, ...]
) -> tuple[ir.Cluster, ...]:
    """The dedicated clusters the providers of ``tracings`` need, by name."""
    out: dict[str, ir.Cluster] = {}
    for tracing in tracings:
        if tracing is None:
            continue
        p = tracing.provider
        if tracing.disable_span_reporting:
            old = out.get(ir.SPAN_SINK_CLUSTER)
            out[ir.SPAN_SINK_CLUSTER] = _sink(p.kind == "opentelemetry" or bool(old and old.http2))
            continue
        if p.cluster == outbound_cluster(p.address, p.port) or p.cluster in out:
            continue
        out[p.cluster] = ir.Cluster(
            name=p.cluster,
            discovery="STATIC" if _is_ip(p.address) else "STRICT_DNS",
            connect_timeout_ms=1_000,
            endpoints=(ir.Endpoint(p.address, p.port),),
            http2=p.kind == "opentelemetry",
            direction="other",
        )
    return tuple(out.values())
