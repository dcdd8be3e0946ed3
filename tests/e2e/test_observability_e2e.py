"""Observability of a transparent Bookinfo mesh under the demo profile.

Metrics, Prometheus, traces, access logs and the dashboard, checked the way a
user sees them. One mesh (``demo_mesh``) serves every test of this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from e2ekit import E2EMesh, http_get, poll
from prometheus_client.parser import text_string_to_metric_families
from traffickit import Manifests, in_pod

from dashkit import browser_page, require_chromium, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]


def test_demo_mesh_serves_productpage(demo_mesh: E2EMesh) -> None:
    status, _ = http_get(demo_mesh.ingress + "/productpage")
    assert status == 200


# --- Metrics: Istio's standard metrics on 15090, merged on 15020 -------------

TCP_ECHO = """\
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: default, labels: {app: tcp-echo}}
spec:
  selector: {app: tcp-echo}
  ports:
  - {name: tcp-echo, port: 9000}
---
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata: {name: tcp-echo-v1, namespace: default, labels: {app: tcp-echo, version: v1}}
spec:
  serviceAccount: tcp-echo
  command: [python, -m, pilotfish.samples.tcp_echo, --service, tcp-echo, --version, v1]
  ports: [{name: tcp-echo, containerPort: 9000}]
  readinessProbe: {tcpSocket: {port: tcp-echo}}
"""

# Runs inside a pod (its app's connections are captured by its sidecar).
FORGED_GET = """
import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
headers = json.load(sys.stdin)
codes = []
for _ in range(3):
    req = urllib.request.Request("http://reviews:9080/reviews/0", headers=headers)
    with opener.open(req, timeout=10) as resp:
        codes.append(resp.status)
print(json.dumps(codes))
"""

TCP_EXCHANGES = """
import json, sys
from pilotfish.samples import tcp_echo
n = json.load(sys.stdin)
for i in range(n):
    greeting, echoed = tcp_echo.exchange("tcp-echo", 9000, f"line {i}")
    assert echoed == f"line {i}", (i, echoed)
print(json.dumps(n))
"""


def _scrape(mesh: E2EMesh, pod: str, port: int = 15090) -> str:
    status, body = http_get(f"http://{mesh.pod_ip(pod)}:{port}/stats/prometheus")
    assert status == 200, (pod, port, body[:300])
    return body.decode("utf-8")


def _total(text: str, metric: str, **labels: str) -> float:
    """Sum of ``metric``'s samples whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and labels.items() <= sample.labels.items():
                total += sample.value
    return total


REVIEWS_PODS = ("reviews-v1-0", "reviews-v2-0", "reviews-v3-0")
FROM_PRODUCTPAGE = {
    "reporter": "destination",
    "source_workload": "productpage-v1",
    "destination_service_name": "reviews",
    "connection_security_policy": "mutual_tls",
    "response_code": "200",
}


def _reviews_requests(mesh: E2EMesh, **labels: str) -> float:
    return sum(_total(_scrape(mesh, pod), "istio_requests_total", **labels) for pod in REVIEWS_PODS)


def test_reviews_counts_exactly_the_requests_through_the_gateway(demo_mesh: E2EMesh) -> None:
    mesh = demo_mesh
    before = {pod: _reviews_requests_on(mesh, pod) for pod in REVIEWS_PODS}
    n = 10
    for _ in range(n):
        status, _ = http_get(mesh.ingress + "/productpage")
        assert status == 200
    # Each productpage view calls reviews once; the counter moves at stream end.
    poll(
        lambda: _reviews_requests(mesh, **FROM_PRODUCTPAGE) - sum(before.values()) >= n,
        "reviews' sidecars to count the requests",
        deadline=20,
    )
    after = {pod: _reviews_requests_on(mesh, pod) for pod in REVIEWS_PODS}
    assert sum(after.values()) - sum(before.values()) == n
    # Judge the histogram on a version that answered: at 1/3 each, any one
    # version gets none of the 10 requests now and then.
    pod = max(REVIEWS_PODS, key=lambda p: after[p] - before[p])
    text = _scrape(mesh, pod)
    # Istio's names only: the stats logger's envoy_istio_ families are renamed.
    assert "envoy_istio_" not in text
    assert "# TYPE istio_request_duration_milliseconds histogram" in text
    assert _total(text, "istio_requests_total", source_workload_namespace="default") > 0
    # Histograms reach the admin output at Envoy's stats flush, so poll: every
    # counted request has its duration observed once.
    poll(
        lambda: (
            _total(
                _scrape(mesh, pod), "istio_request_duration_milliseconds_count", **FROM_PRODUCTPAGE
            )
            == after[pod]
        ),
        f"{pod}'s duration histogram to count as many requests as its counter",
        deadline=20,
    )


def _reviews_requests_on(mesh: E2EMesh, pod: str) -> float:
    return _total(_scrape(mesh, pod), "istio_requests_total", **FROM_PRODUCTPAGE)


def _source_reviews_samples(mesh: E2EMesh) -> list[dict[str, str]]:
    """Label sets (with value) of productpage's source-reported calls to reviews."""
    text = _scrape(mesh, "productpage-v1-0")
    return [
        {**sample.labels, "value": str(sample.value)}
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "istio_requests_total"
        and sample.labels.get("reporter") == "source"
        and sample.labels.get("destination_service_name") == "reviews"
    ]


def test_source_reporter_names_the_workload_that_answered(demo_mesh: E2EMesh) -> None:
    mesh = demo_mesh

    def total() -> float:
        return sum(float(s["value"]) for s in _source_reviews_samples(mesh))

    before = total()
    n = 6
    for _ in range(n):
        status, _ = http_get(mesh.ingress + "/productpage")
        assert status == 200
    poll(lambda: total() - before >= n, "productpage's sidecar to count its calls", deadline=20)
    assert total() - before == n
    for sample in _source_reviews_samples(mesh):
        # From the endpoint the control plane described, not from the callee.
        version = sample["destination_version"]
        assert version in ("v1", "v2", "v3"), sample
        assert sample["destination_workload"] == f"reviews-{version}", sample
        assert sample["destination_workload_namespace"] == "default", sample
        assert sample["destination_app"] == "reviews", sample
        assert sample["destination_canonical_service"] == "reviews", sample
        assert sample["destination_canonical_revision"] == version, sample
        assert sample["destination_cluster"] == "Kubernetes", sample
        assert sample["source_workload"] == "productpage-v1", sample


def test_forged_source_headers_do_not_change_source_workload(demo_mesh: E2EMesh) -> None:
    mesh = demo_mesh
    forged = {"x-pilotfish-peer-workload": "forged", "x-pilotfish-peer-app": "forged"}
    before = _reviews_requests(mesh, **FROM_PRODUCTPAGE)
    codes = in_pod(mesh, "productpage-v1-0", FORGED_GET, forged)
    assert codes == [200, 200, 200]
    poll(
        lambda: _reviews_requests(mesh, **FROM_PRODUCTPAGE) - before >= 3,
        "the calls to be counted as productpage-v1's",
        deadline=20,
    )
    for pod in REVIEWS_PODS:
        assert "forged" not in _scrape(mesh, pod)


def test_tcp_service_reports_tcp_metrics(demo_mesh: E2EMesh, tmp_path: Path) -> None:
    mesh = demo_mesh
    with Manifests(mesh, tmp_path) as manifests:
        manifests.apply("tcp-echo", TCP_ECHO)
        poll(
            lambda: any(p["name"] == "tcp-echo-v1-0" and p["ready"] for p in mesh.pods()),
            "tcp-echo ready",
            deadline=90,
        )
        n = 5
        poll(
            lambda: in_pod(mesh, "productpage-v1-0", TCP_EXCHANGES, 1) == 1,
            "tcp-echo reachable from productpage",
            deadline=60,
            ignore=(AssertionError,),
        )
        labels = {"reporter": "destination", "connection_security_policy": "mutual_tls"}

        def count(metric: str) -> float:
            return _total(_scrape(mesh, "tcp-echo-v1-0"), metric, **labels)

        opened = count("istio_tcp_connections_opened_total")
        closed = count("istio_tcp_connections_closed_total")
        assert in_pod(mesh, "productpage-v1-0", TCP_EXCHANGES, n) == n
        poll(
            lambda: count("istio_tcp_connections_closed_total") - closed >= n,
            "tcp-echo's sidecar to count closed connections",
            deadline=20,
        )
        assert count("istio_tcp_connections_opened_total") - opened == n
        assert count("istio_tcp_connections_closed_total") - closed == n
        assert count("istio_tcp_received_bytes_total") > 0
        assert count("istio_tcp_sent_bytes_total") > 0


def test_status_port_merges_proxy_and_agent_metrics(demo_mesh: E2EMesh) -> None:
    text = _scrape(demo_mesh, "productpage-v1-0", 15020)
    families = {f.name for f in text_string_to_metric_families(text)}
    assert "istio_requests" in families  # the proxy's (prometheus-client drops _total)
    assert "pilotfish_agent_envoy_starts" in families  # the agent's own


# --- Prometheus: the real server scraping every proxy --------------------------

KIALI_QUERY = (
    'sum(rate(istio_requests_total{reporter="destination"}[1m])) '
    "by (source_workload, destination_service_name, response_code)"
)


def _prom_query(mesh: E2EMesh, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{mesh.prometheus_port}/api/v1/query?" + urlencode({"query": query})
    status, body = http_get(url)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["status"] == "success"
    return list(answer["data"]["result"])


def _prom_value(mesh: E2EMesh, query: str) -> float:
    return sum(float(r["value"][1]) for r in _prom_query(mesh, query))


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def test_prometheus_counts_equal_the_requests_sent(demo_mesh: E2EMesh) -> None:
    mesh = demo_mesh
    query = f"sum(istio_requests_total{{{_selector(FROM_PRODUCTPAGE)}}})"

    # Settled: Prometheus' last scrape agrees with what the sidecars count now.
    def settled() -> bool:
        return _prom_value(mesh, query) == _reviews_requests(mesh, **FROM_PRODUCTPAGE)

    poll(settled, "Prometheus to scrape the reviews sidecars", deadline=60)
    before = _prom_value(mesh, query)
    n = 7
    for _ in range(n):
        status, _ = http_get(mesh.ingress + "/productpage")
        assert status == 200
    poll(
        lambda: _prom_value(mesh, query) >= before + n,
        "Prometheus to see the new requests",
        deadline=60,
    )
    assert _prom_value(mesh, query) == before + n
    # Kiali's graph query answers, by source workload and service.
    rows = _prom_query(mesh, KIALI_QUERY)
    pairs = {
        (r["metric"].get("source_workload"), r["metric"].get("destination_service_name"))
        for r in rows
    }
    assert ("productpage-v1", "reviews") in pairs
    assert ("istio-ingressgateway", "productpage") in pairs


def test_prometheus_targets_carry_pod_labels(demo_mesh: E2EMesh) -> None:
    mesh = demo_mesh
    url = f"http://127.0.0.1:{mesh.prometheus_port}/api/v1/targets?state=active"

    def targets() -> list[dict[str, Any]]:
        status, body = http_get(url)
        assert status == 200
        return list(json.loads(body)["data"]["activeTargets"])

    def pods_up() -> bool:
        up = {t["labels"].get("pod") for t in targets() if t["health"] == "up"}
        return {"productpage-v1-0", "reviews-v2-0", "ratings-v1-0", "istio-ingressgateway"} <= up

    poll(pods_up, "every pod and the ingress gateway scraped", deadline=60)
    by_pod = {t["labels"].get("pod"): t["labels"] for t in targets()}
    assert by_pod["reviews-v2-0"]["namespace"] == "default"
    assert by_pod["reviews-v2-0"]["app"] == "reviews"
    assert by_pod["reviews-v2-0"]["version"] == "v2"
    assert by_pod["reviews-v2-0"]["job"] == "kubernetes-pods"
    jobs = {t["labels"]["job"] for t in targets() if t["health"] == "up"}
    assert "pilotfish-control-plane" in jobs


# --- dashboard ----------------------------------------------------------------
# The dashboard addon of the demo profile, in headless Chromium, after Bookinfo
# traffic through the ingress gateway.


def test_dashboard_graph_shows_bookinfo_with_mtls(demo_mesh: E2EMesh, tmp_path: Path) -> None:
    require_chromium()
    url = demo_mesh.cli(
        "dashboard", "--print-url", "--state-dir", str(demo_mesh.state_dir)
    ).stdout.strip()
    # The addon starts with the mesh but may still be binding its port.
    poll(lambda: http_get(url)[0] == 200, f"dashboard at {url}", deadline=60)
    with browser_page() as page:
        page.goto(url + "#/graph")

        def bookinfo_edges() -> dict[tuple[str, str], dict[str, Any]] | None:
            for _ in range(5):
                http_get(demo_mesh.ingress + "/productpage")
            edges = page.evaluate(
                "() => window.pilotfishGraph ? window.pilotfishGraph"
                ".edges('[kind = \"traffic\"]').map(e => e.data()) : []"
            )
            by_pair = {
                (e["source"].split("/")[1].rsplit("-", 1)[0],
                 e["dest_workload"].split("/")[1].rsplit("-", 1)[0]): e
                for e in edges if e["rps"] > 0
            }  # fmt: skip
            wanted = {("productpage", "reviews"), ("reviews", "ratings")}
            return by_pair if wanted <= by_pair.keys() else None

        # Prometheus scrapes, then the page refreshes every 5 s.
        edges = poll(bookinfo_edges, "productpage -> reviews -> ratings in the graph", deadline=180)
        for pair in (("productpage", "reviews"), ("reviews", "ratings")):
            assert edges[pair]["mtls"], f"{pair} is not shown as mutual TLS: {edges[pair]}"
            assert "\U0001f512" in edges[pair]["label"]
        screenshot(page, tmp_path, "e2e-graph")
        for name, selector in (
            ("workloads", "tr[data-workload^='reviews']"),
            ("services", "tr[data-service='reviews']"),
            ("config", "h3"),
            ("traces", "#trace-form"),
        ):
            page.goto(f"{url}#/{name}")
            page.wait_for_selector(selector)
            screenshot(page, tmp_path, f"e2e-{name}")


def test_stat_and_top_show_golden_metrics_per_workload(demo_mesh: E2EMesh) -> None:
    mesh = demo_mesh
    state = ("--state-dir", str(mesh.state_dir))

    def reviews_row() -> dict[str, Any] | None:
        for _ in range(3):
            http_get(mesh.ingress + "/productpage")
        out = mesh.cli("stat", "-n", "default", "--window", "1m", "-o", "json", *state).stdout
        rows = {r["workload"]: r for r in json.loads(out)}
        row = rows.get("reviews-v1")
        return row if row and row["rps"] > 0 and row["latency_ms"]["p50"] is not None else None

    row = poll(reviews_row, "pilotfish stat to list reviews-v1", deadline=60)
    assert row["namespace"] == "default"
    assert row["success_rate"] == 1.0
    assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
    table = mesh.cli("top", "--once", "-n", "default", *state).stdout
    assert "productpage-v1" in table and "reviews-v1" in table and "P99" in table


# -- telemetry-api: access logs and the Telemetry API -----------------------------------


def _json_log_lines(mesh: E2EMesh, workload: str) -> list[dict[str, object]]:
    out = mesh.cli("logs", workload, "--sidecar").stdout
    lines = []
    for line in out.splitlines():
        text = line.split("] ", 1)[1] if line.startswith("[") else line
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def test_access_logs_are_json_lines_with_istio_fields(demo_mesh: E2EMesh) -> None:
    status, _ = http_get(demo_mesh.ingress + "/productpage?telemetry-api=json")
    assert status == 200

    def logged() -> dict[str, object] | None:
        for entry in _json_log_lines(demo_mesh, "productpage-v1"):
            if entry.get("path") == "/productpage?telemetry-api=json":
                return entry
        return None

    def tail() -> str:
        return demo_mesh.cli("logs", "productpage-v1", "--sidecar", "--tail", "15").stdout

    entry = poll(
        logged, "productpage's sidecar to log the request as JSON", deadline=30, context=tail
    )
    assert entry["method"] == "GET" and entry["response_code"] == 200
    assert {"start_time", "upstream_cluster", "request_id", "duration"} <= set(entry)


# --- Telemetry API: metrics off for a namespace (last: it changes the mesh) ------

METRICS_OFF = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: no-metrics, namespace: default}
spec:
  metrics:
  - overrides:
    - match: {metric: ALL_METRICS}
      disabled: true
"""


def _reviews_log_entries(mesh: E2EMesh) -> int:
    return sum(
        1
        for pod in REVIEWS_PODS
        for entry in _json_log_lines(mesh, pod)
        if str(entry.get("path", "")).startswith("/reviews/")
    )


def test_telemetry_disabling_metrics_for_a_namespace_stops_them(
    demo_mesh: E2EMesh, tmp_path: Path
) -> None:
    mesh = demo_mesh
    path = tmp_path / "no-metrics.yaml"
    path.write_text(METRICS_OFF)
    mesh.cli("apply", "-f", str(path))
    try:
        # Applied: reviews' listeners no longer carry the stats loggers, and every
        # proxy has acknowledged its new configuration.
        def applied() -> bool:
            dump = mesh.cli("proxy-config", "listeners", "reviews-v1-0.default", "-o", "json")
            status = mesh.cli("proxy-status").stdout
            return "envoy.access_loggers.stats" not in dump.stdout and "STALE" not in status

        poll(applied, "the Telemetry to reach reviews' sidecar", deadline=60)

        # A changed filter chain applies to new connections: connections opened
        # before (pooled by productpage's sidecar) keep the old chain, stats
        # loggers included, until Envoy has drained it.
        def drained() -> bool:
            return all(
                mesh.envoy_stat(pod, "listener_manager.total_filter_chains_draining") == 0
                and mesh.envoy_stat(pod, "listener_manager.total_listeners_draining") == 0
                for pod in REVIEWS_PODS
            )

        poll(drained, "reviews' sidecars to drain their old filter chains", deadline=60)
        before = _reviews_requests(mesh, **FROM_PRODUCTPAGE)
        logged = _reviews_log_entries(mesh)
        n = 5
        for _ in range(n):
            assert http_get(mesh.ingress + "/productpage")[0] == 200
        # The access log (still on) is written in the same end-of-stream pass as
        # the stats loggers, so once it shows the requests the counters had their
        # chance to move.
        poll(
            lambda: _reviews_log_entries(mesh) >= logged + n,
            "reviews' sidecars to log the requests",
            deadline=30,
        )
        assert _reviews_requests(mesh, **FROM_PRODUCTPAGE) == before
    finally:
        mesh.cli("delete", "-f", str(path), check=False)


# --- Traces: Envoy's Zipkin tracer in every proxy, the runtime's trace store ---


def _trace(mesh: E2EMesh, trace_id: str) -> list[dict[str, Any]]:
    status, body = http_get(f"http://127.0.0.1:{mesh.tracing_port}/api/v2/trace/{trace_id}")
    return list(json.loads(body)) if status == 200 else []


def _service(span: dict[str, Any]) -> str:
    """The workload's canonical service (the span's ``service.namespace``)."""
    return str(span.get("localEndpoint", {}).get("serviceName", "")).split(".")[0]


def _hops(spans: list[dict[str, Any]], leaf: dict[str, Any]) -> list[str]:
    """The services from the trace's root down to ``leaf``, one entry per hop."""
    by_id = {s["id"]: s for s in spans}
    chain: list[str] = []
    span: dict[str, Any] | None = leaf
    while span is not None:
        if not chain or chain[-1] != _service(span):
            chain.append(_service(span))
        span = by_id.get(span.get("parentId", ""))
    return chain[::-1]


def test_one_request_through_the_gateway_is_one_trace_across_bookinfo(
    demo_mesh: E2EMesh, tmp_path: Path
) -> None:
    mesh = demo_mesh
    # reviews-v1 does not call ratings: send a few, each in a trace of our own
    # (W3C traceparent from the client, which the gateway continues).
    ids = [f"{i + 1:08x}" + "5ca1ab1e" * 3 for i in range(8)]
    for trace_id in ids:
        header = f"00-{trace_id}-{'00f067aa0ba902b7'}-01"
        status, _ = http_get(mesh.ingress + "/productpage", {"traceparent": header})
        assert status == 200

    def full_trace() -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
        for trace_id in ids:
            spans = _trace(mesh, trace_id)
            leaves = [s for s in spans if _service(s) == "ratings" and s.get("kind") == "SERVER"]
            # Complete only when the chain of parents from the ratings span reaches
            # the gateway: each Envoy worker thread buffers and flushes its own
            # spans, so a sidecar's inbound span can arrive before its outbound one.
            if leaves and _hops(spans, leaves[0])[0] == "istio-ingressgateway":
                return spans, leaves[0]
        return None

    # Envoy's Zipkin reporter flushes every few seconds, per worker thread.
    spans, ratings = poll(full_trace, "a trace gateway -> productpage -> reviews -> ratings", 60)
    assert len({s["traceId"] for s in spans}) == 1
    assert spans[0]["traceId"] in ids
    assert _hops(spans, ratings) == ["istio-ingressgateway", "productpage", "reviews", "ratings"]
    gateway = next(s for s in spans if _service(s) == "istio-ingressgateway")
    assert gateway["tags"]["http.url"].endswith("/productpage")
    assert gateway["tags"]["http.status_code"] == "200"
    assert gateway.get("parentId") == "00f067aa0ba902b7"
    # Istio's standard tags name each span's workload.
    assert ratings["tags"]["istio.canonical_service"] == "ratings"
    assert ratings["tags"]["istio.namespace"] == "default"
    assert ratings["tags"]["http.status_code"] == "200"
    # The trace store's Zipkin query API lists the services it saw.
    status, body = http_get(f"http://127.0.0.1:{mesh.tracing_port}/api/v2/services")
    assert status == 200
    assert {"productpage.default", "reviews.default", "ratings.default"} <= set(json.loads(body))
    # The dashboard's waterfall shows the same trace, one row per span.
    require_chromium()
    url = mesh.cli("dashboard", "--print-url", "--state-dir", str(mesh.state_dir)).stdout.strip()
    poll(lambda: http_get(url)[0] == 200, f"dashboard at {url}", deadline=60)
    with browser_page() as page:
        trace_id = spans[0]["traceId"]

        def rows_match_store() -> list[str] | None:
            # Spans of other hops (details) may still be on their way from Envoy's
            # per-worker buffers: compare the page with the store as it is now.
            page.goto(f"{url}#/trace/{trace_id}")
            page.reload()
            page.wait_for_selector(".span-row")
            shown = page.locator(".span-label").all_inner_texts()
            return shown if len(shown) == len(_trace(mesh, trace_id)) >= len(spans) else None

        labels = poll(rows_match_store, "the waterfall shows every span of the trace", 30)
        assert any(label.startswith("ratings.default") for label in labels)
        screenshot(page, tmp_path, "e2e-trace-waterfall")


# --- Ambient pods in the same mesh: the node proxy's TCP metrics as graph edges ---

AMBIENT_TCP = """\
apiVersion: v1
kind: Service
metadata: {name: amb-echo, namespace: default}
spec:
  selector: {app: amb-echo}
  ports: [{name: tcp-echo, port: 9000}]
""" + "".join(
    f"""---
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata:
  name: {name}
  namespace: default
  labels: {{app: {name}, version: v1, istio.io/dataplane-mode: ambient}}
spec:
  serviceAccount: {name}
  command: [python, -m, pilotfish.samples.tcp_echo, --service, {name}, --version, v1]
  ports: [{{name: tcp-echo, containerPort: 9000}}]
  readinessProbe: {{tcpSocket: {{port: tcp-echo}}}}
"""
    for name in ("amb-echo", "amb-client")
)

AMBIENT_EXCHANGES = TCP_EXCHANGES.replace('"tcp-echo", 9000', '"amb-echo", 9000')


_AMBIENT_SENT = (
    'istio_tcp_sent_bytes_total{reporter="destination", destination_workload="amb-echo", '
    'connection_security_policy="mutual_tls", source_workload="amb-client", '
    'source_principal="spiffe://cluster.local/ns/default/sa/amb-client"}'
)


def test_node_proxy_metrics_reach_prometheus_and_the_graph(
    demo_mesh: E2EMesh, tmp_path: Path
) -> None:
    """The node proxy starts with the first ambient pod, after Prometheus: it must
    still become a target, or ambient traffic never shows; and the destination's node
    proxy names the source workload and the service called (from the CONNECT
    request's headers), so the graph draws the edge between the two pods."""
    mesh = demo_mesh
    url = mesh.cli("dashboard", "--print-url", "--state-dir", str(mesh.state_dir)).stdout.strip()
    with Manifests(mesh, tmp_path) as manifests:
        manifests.apply("ambient-tcp", AMBIENT_TCP)

        def ambient_ready() -> bool:
            rows = {p["name"]: p for p in mesh.pods()}
            pods = [rows.get(n, {}) for n in ("amb-echo-0", "amb-client-0")]
            return all(p.get("ready") and p.get("dataplane") == "ambient" for p in pods)

        poll(ambient_ready, "the ambient pods to be ready", deadline=90)

        def scraped() -> float:
            assert in_pod(mesh, "amb-client-0", AMBIENT_EXCHANGES, 3) == 3
            return _prom_value(mesh, _AMBIENT_SENT)

        poll(scraped, "the node proxy's istio_tcp_sent_bytes_total in Prometheus", deadline=120)
        poll(lambda: http_get(url)[0] == 200, f"dashboard at {url}", deadline=60)

        def ambient_edge() -> dict[str, Any] | None:
            # The graph shows rates over the window: a counter whose first scrape
            # already held all the bytes sent has none, so traffic goes on while polling.
            assert in_pod(mesh, "amb-client-0", AMBIENT_EXCHANGES, 1) == 1
            status, body = http_get(f"{url.split('#')[0].rstrip('/')}/api/graph?window=1m")
            assert status == 200, body[:300]
            for edge in json.loads(body)["edges"]:
                if (edge["source"], edge["target"]) == ("default/amb-client", "default/amb-echo"):
                    return dict(edge) if edge["tcp_bytes_per_s"] > 0 else None
            return None

        edge = poll(ambient_edge, "amb-client -> amb-echo in the graph", deadline=60)
        # Carried by the node proxies in HBONE, mutual TLS with the pods' own identities.
        assert edge["protocol"] == "tcp" and edge["mtls"], edge
        assert edge["service"] == "amb-echo", edge
