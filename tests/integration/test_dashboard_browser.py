"""The dashboard in real headless Chromium, over a real Prometheus.

Prometheus scrapes a small exposition endpoint that serves Istio-shaped series
growing at fixed rates (the mesh itself is covered by the e2e test); the same
endpoint stands in for the control plane's routes and a Zipkin trace store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dashkit import browser_page, require_chromium, screenshot
from pilotfish.runtime.ports import free_port as _free_port
from polling import poll

pytestmark = pytest.mark.integration

NS = "default"
# (source, destination, service, code, requests per second, security policy)
FLOWS = [
    ("istio-ingressgateway", "productpage-v1", "productpage", "200", 4.0, "none"),
    ("productpage-v1", "reviews-v1", "reviews", "200", 3.96, "mutual_tls"),
    ("productpage-v1", "reviews-v1", "reviews", "503", 0.04, "mutual_tls"),
    ("reviews-v1", "ratings-v1", "ratings", "200", 1.6, "mutual_tls"),
    ("reviews-v1", "ratings-v1", "ratings", "500", 0.4, "mutual_tls"),
]
BUCKETS = (5.0, 10.0, 25.0, 50.0, 100.0)
TRACE_ID = "463ac35c9f6413ad48485a3953bb6124"
START = time.time()


def _labels(src: str, dst: str, svc: str, code: str, policy: str) -> str:
    return (
        f'reporter="destination",source_workload="{src}",source_workload_namespace="{NS}",'
        f'destination_workload="{dst}",destination_workload_namespace="{NS}",'
        f'destination_service_name="{svc}",destination_service_namespace="{NS}",'
        f'response_code="{code}",request_protocol="http",connection_security_policy="{policy}"'
    )


def exposition() -> str:
    elapsed = time.time() - START
    lines = ["# TYPE istio_requests_total counter"]
    for src, dst, svc, code, rps, policy in FLOWS:
        lines.append(
            f"istio_requests_total{{{_labels(src, dst, svc, code, policy)}}} {rps * elapsed}"
        )
    lines.append("# TYPE istio_request_duration_milliseconds histogram")
    for src, dst, svc, code, rps, policy in FLOWS:
        lab = _labels(src, dst, svc, code, policy)
        count = rps * elapsed
        # Half the requests take under 10 ms, all under 50 ms.
        for le, share in zip(BUCKETS, (0.1, 0.5, 0.8, 1.0, 1.0), strict=True):
            lines.append(
                f'istio_request_duration_milliseconds_bucket{{{lab},le="{le}"}} {count * share}'
            )
        lines.append(f'istio_request_duration_milliseconds_bucket{{{lab},le="+Inf"}} {count}')
        lines.append(f"istio_request_duration_milliseconds_count{{{lab}}} {count}")
        lines.append(f"istio_request_duration_milliseconds_sum{{{lab}}} {count * 12}")
    return "\n".join(lines) + "\n"


def _pods() -> dict[str, Any]:
    return {
        "phase": "running",
        "mode": "transparent",
        "pods": [
            {
                "name": f"{w}-0",
                "namespace": NS,
                "workload": w,
                "identity": f"spiffe://cluster.local/ns/{NS}/sa/{w.split('-')[0]}",
                "cert_expires": START + 86400,
            }
            for w in ("productpage-v1", "reviews-v1", "ratings-v1")
        ],
    }


def _syncz() -> list[dict[str, Any]]:
    synced = {"sent": "3", "acked": "3"}
    return [
        {"proxy_id": f"{w}-0.{NS}", "types": dict.fromkeys(("CDS", "LDS", "EDS", "RDS"), synced)}
        for w in ("productpage-v1", "reviews-v1")
    ]


CONFIGZ = {
    "revision": 7,
    "resources": [
        {"kind": "VirtualService", "namespace": NS, "name": "reviews", "file": "vs.yaml", "line": 1}
    ],
    "errors": [],
    "warnings": [
        {"file": "dr.yaml", "line": 4, "field": "spec.host", "message": "host ratingz not found"}
    ],
}


def _items(*docs: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(docs)}


def _doc(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": NS, **meta}, "spec": spec}


def _selecting(app: str) -> dict[str, Any]:
    return {"selector": {"matchLabels": {"app": app}}}


CONFIG_LISTS = {
    f"/apis/pilotfish.io/v1alpha1/namespaces/{NS}/workloads": _items(
        _doc("Workload", "reviews-v1", {}, labels={"app": "reviews", "version": "v1"})
    ),
    "/api/v1/services": _items(
        _doc("Service", "reviews", {"selector": {"app": "reviews"}}),
        _doc("Service", "ratings", {"selector": {"app": "ratings"}}),
    ),
    "/apis/networking.istio.io/v1/virtualservices": _items(
        _doc("VirtualService", "reviews-route", {"hosts": ["reviews"]}),
        _doc("VirtualService", "ratings-route", {"hosts": ["ratings"]}),
    ),
    "/apis/networking.istio.io/v1/destinationrules": _items(
        _doc("DestinationRule", "ratings-dr", {"host": "ratings.default.svc.cluster.local"})
    ),
    "/apis/networking.istio.io/v1/sidecars": _items(),
    "/apis/security.istio.io/v1/peerauthentications": _items(
        {
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"},
            "spec": {"mtls": {"mode": "STRICT"}},
        }
    ),
    "/apis/security.istio.io/v1/authorizationpolicies": _items(
        _doc("AuthorizationPolicy", "reviews-viewer", _selecting("reviews")),
        _doc("AuthorizationPolicy", "ratings-viewer", _selecting("ratings")),
    ),
    "/apis/security.istio.io/v1/requestauthentications": _items(),
}


def _spans() -> list[dict[str, Any]]:
    t0 = int(START * 1e6)
    return [
        {"traceId": TRACE_ID, "id": "a1", "name": "productpage", "timestamp": t0,
         "duration": 30000, "localEndpoint": {"serviceName": "productpage.default"}},
        {"traceId": TRACE_ID, "id": "b2", "parentId": "a1", "name": "reviews",
         "timestamp": t0 + 5000, "duration": 20000,
         "localEndpoint": {"serviceName": "reviews.default"}},
    ]  # fmt: skip


def _explanation(query: str) -> dict[str, Any]:
    """A canned ``/debug/explain`` answer naming what the dashboard asked for."""
    q = urllib.parse.parse_qs(query)
    return {
        "from": q["from"][0],
        "request": {"url": q["url"][0], "method": q["method"][0]},
        "steps": [{"step": "route", "chosen": "default/ratings", "reasons": ["matches"]}],
        "outcome": {"cluster": "outbound|9080||ratings.default.svc.cluster.local",
                    "clusters": {}, "status": None, "authz": "ALLOW",
                    "authz_policy": "default/ratings-viewer", "notes": []},
    }  # fmt: skip


class _FakeMesh(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        body: Any
        if path == "/metrics":
            self._send(exposition().encode(), "text/plain; version=0.0.4")
            return
        if (
            path.startswith(("/runtime", "/debug"))
            and self.headers.get("Authorization") != "Bearer test-token"
        ):
            self._send(b'{"error":"unauthorized"}', "application/json", 401)
            return
        routes: dict[str, Any] = {
            "/runtime/pods": _pods,
            "/debug/syncz": _syncz,
            "/debug/configz": lambda: CONFIGZ,
            "/debug/explain": lambda: _explanation(query),
            "/api/v2/services": lambda: ["productpage.default", "reviews.default"],
            "/api/v2/traces": lambda: [_spans()],
            f"/api/v2/trace/{TRACE_ID}": _spans,
            **{p: (lambda body=body: body) for p, body in CONFIG_LISTS.items()},
        }
        if path not in routes:
            self._send(b"not found", "text/plain", 404)
            return
        body = routes[path]()
        self._send(json.dumps(body).encode(), "application/json")

    def _send(self, body: bytes, ctype: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[str]:
    """Fake mesh + real Prometheus + the dashboard server; yields the dashboard URL."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed")
    require_chromium()
    fake = ThreadingHTTPServer(("127.0.0.1", 0), _FakeMesh)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    fake_url = f"http://127.0.0.1:{fake.server_address[1]}"
    target = f"127.0.0.1:{fake.server_address[1]}"
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: mesh\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    token = tmp_path / "token"
    token.write_text("test-token\n")
    prom_port, dash_port = _free_port(), _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(
            [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=(tmp_path / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pilotfish.cli.main", "dashboard-server",
             "--address", "127.0.0.1", "--port", str(dash_port),
             "--prometheus", f"http://127.0.0.1:{prom_port}", "--tracing", fake_url,
             "--control-plane", fake_url, "--token-file", str(token)],
            stdout=(tmp_path / "dashboard.log").open("wb"), stderr=subprocess.STDOUT,
        ))  # fmt: skip
        url = f"http://127.0.0.1:{dash_port}/"
        # Both processes bind after start-up; wait until each answers before a browser asks.
        for probe in (f"http://127.0.0.1:{prom_port}/-/ready", url):
            poll(lambda probe=probe: _answers(probe), f"{probe} answering", deadline=30)
        yield url
    finally:
        for proc in procs:
            _stop(proc)
        fake.shutdown()
        fake.server_close()


def _graph_edges(page: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate(
        "() => window.pilotfishGraph ? window.pilotfishGraph.edges('[kind = \"traffic\"]')"
        ".map(e => e.data()) : []"
    )
    return result


def test_dashboard_pages_in_chromium(stack: str, tmp_path: Path) -> None:
    with browser_page() as page:
        page.goto(stack + "#/graph")

        def edges_with_rates() -> list[dict[str, Any]] | None:
            edges = _graph_edges(page)
            ready = len(edges) == 3 and all(e["rps"] > 0 and e["p50_ms"] for e in edges)
            return edges if ready else None

        # The page refreshes itself every 5 s; rates appear once Prometheus has two scrapes.
        edges = poll(edges_with_rates, "graph edges with rates", deadline=60, interval=0.5)
        by_pair = {(e["source"], e["dest_workload"]): e for e in edges}
        pp_rev = by_pair[(f"{NS}/productpage-v1", f"{NS}/reviews-v1")]
        rev_rat = by_pair[(f"{NS}/reviews-v1", f"{NS}/ratings-v1")]
        ingress = by_pair[(f"{NS}/istio-ingressgateway", f"{NS}/productpage-v1")]
        assert pp_rev["mtls"] and rev_rat["mtls"] and not ingress["mtls"]
        assert "\U0001f512" in pp_rev["label"] and "\U0001f512" not in ingress["label"]
        # rate() over a 1m window under-reports series younger than the window, equally
        # for all of them here, so compare the served rates (4 rps and 2 rps) by ratio.
        assert pp_rev["rps"] / rev_rat["rps"] == pytest.approx(2.0, rel=0.15)
        assert rev_rat["error_percent"] == pytest.approx(20.0, abs=3)
        assert 5 < rev_rat["p50_ms"] < 25 and rev_rat["p99_ms"] <= 50
        node_ids = set(page.evaluate("() => window.pilotfishGraph.nodes().map(n => n.id())"))
        assert {f"{NS}/productpage-v1", f"{NS}/reviews-v1", f"svc:{NS}/ratings"} <= node_ids
        screenshot(page, tmp_path, "graph")

        page.goto(stack + "#/workloads")
        page.wait_for_selector("tr[data-workload='ratings-v1']")
        health = {
            w: page.get_attribute(f"tr[data-workload='{w}'] td[data-health]", "data-health")
            for w in ("productpage-v1", "reviews-v1", "ratings-v1")
        }
        assert health == {"productpage-v1": "healthy", "reviews-v1": "degraded",
                          "ratings-v1": "failing"}  # fmt: skip
        assert (
            page.locator("tr[data-workload='ratings-v1'] td[data-health]").evaluate(
                "td => getComputedStyle(td).color"
            )
            == "rgb(214, 40, 40)"
        )
        reviews_row = page.inner_text("tr[data-workload='reviews-v1']")
        assert (
            "SYNCED" in reviews_row
            and "spiffe://cluster.local/ns/default/sa/reviews" in reviews_row
        )
        assert "NOT CONNECTED" in page.inner_text("tr[data-workload='ratings-v1']")
        screenshot(page, tmp_path, "workloads")

        page.goto(stack + "#/services")
        page.wait_for_selector("tr[data-service='ratings'] td[data-health='failing']")
        screenshot(page, tmp_path, "services")

        page.goto(stack + f"#/workload/{NS}/reviews-v1")
        page.wait_for_selector("[data-direction='inbound'] svg path")
        page.wait_for_selector("tr.applies")
        applies = page.locator("tr.applies").all_inner_texts()
        names = {row.split("\t")[2] for row in applies}
        assert names == {"reviews-route", "reviews-viewer", "default"}, applies
        page.fill("#explain-url", "http://ratings:9080/")
        page.click("#explain-go")
        page.wait_for_function("document.getElementById('explain-out').textContent.length > 0")
        explained = page.inner_text("#explain-out")
        assert explained.startswith("GET http://ratings:9080/ from reviews-v1.default"), explained
        assert "1. route: default/ratings" in explained
        assert "Authorization at the destination: ALLOW (default/ratings-viewer)" in explained
        screenshot(page, tmp_path, "workload")

        page.goto(stack + "#/config")
        page.wait_for_selector("tr.finding")
        assert "dr.yaml:4" in page.inner_text("tr.finding")
        screenshot(page, tmp_path, "config")

        page.goto(stack + "#/traces")
        page.wait_for_selector("tr.trace")
        page.click(f"text={TRACE_ID}")
        page.wait_for_selector("[data-span='b2'] .bar")
        assert page.locator(".span-row").count() == 2
        screenshot(page, tmp_path, "trace")
