"""Collector clusters: a proxy that traces has its providers' clusters in CDS."""

from __future__ import annotations

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.model.snapshot import build_snapshot
from pilotfish.translate.telemetry_collectors import collector_clusters, in_mesh

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: jaeger, namespace: observability}
spec:
  ports: [{name: http-zipkin, port: 9411}]
  selector: {app: jaeger}
"""


def _tracing(address: str, port: int, kind: str = "zipkin") -> ir.Tracing:
    cluster = f"{kind}|{address}:{port}"
    return ir.Tracing(ir.TracingProvider(kind, kind, address, port, cluster))  # type: ignore[arg-type]


def test_a_mesh_service_collector_uses_the_services_outbound_cluster() -> None:
    loaded = load_text(SERVICE, "mesh.yaml")
    assert loaded.ok, loaded.diagnostics
    snapshot = build_snapshot(loaded.resources, 1)
    host = "jaeger.observability.svc.cluster.local"
    tracing = in_mesh(snapshot, _tracing(host, 9411))
    assert tracing is not None
    assert tracing.provider.cluster == f"outbound|9411||{host}"
    assert collector_clusters(snapshot, (tracing,)) == ()
    # Another port of the same name is not the service: a cluster of its own.
    other = in_mesh(snapshot, _tracing(host, 4317, "opentelemetry"))
    assert other is not None and other.provider.cluster == f"opentelemetry|{host}:4317"
    (cluster,) = collector_clusters(snapshot, (other,))
    assert (cluster.discovery, cluster.http2) == ("STRICT_DNS", True)


def test_an_address_gets_one_static_cluster_however_many_sides_name_it() -> None:
    snapshot = build_snapshot([], 1)
    tracing = _tracing("198.18.240.1", 9411)
    (cluster,) = collector_clusters(snapshot, (tracing, tracing, None))
    assert cluster.discovery == "STATIC" and not cluster.http2
    assert cluster.endpoints == (ir.Endpoint("198.18.240.1", 9411),)


def test_disabled_span_reporting_gets_the_sink_cluster_instead_of_the_collector() -> None:
    snapshot = build_snapshot([], 1)
    tracing = _tracing("198.18.240.1", 9411)
    quiet = ir.Tracing(tracing.provider, disable_span_reporting=True)
    (sink,) = collector_clusters(snapshot, (quiet,))
    # No endpoints: the tracer's flushes fail inside Envoy, nothing is sent.
    assert (sink.name, sink.discovery, sink.endpoints) == (ir.SPAN_SINK_CLUSTER, "STATIC", ())
    assert not sink.http2
    # A silent OTLP tracer names the same sink, which must then speak HTTP/2 (gRPC).
    otlp = ir.Tracing(_tracing("198.18.240.1", 4317, "opentelemetry").provider, 1.0, (), True)
    (both,) = collector_clusters(snapshot, (quiet, otlp))
    assert both.http2
    # A reporting side next to a silent one keeps its own collector.
    names = {c.name for c in collector_clusters(snapshot, (tracing, quiet))}
    assert names == {tracing.provider.cluster, ir.SPAN_SINK_CLUSTER}
