"""Observability of a transparent Bookinfo mesh under the demo profile.

Metrics, Prometheus, traces, access logs and the dashboard, checked the way a
user sees them. One mesh (``demo_mesh``) serves every test of this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2ekit import E2EMesh, http_get, poll

from dashkit import browser_page, require_chromium, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]


def test_demo_mesh_serves_productpage(demo_mesh: E2EMesh) -> None:
    status, _ = http_get(demo_mesh.ingress + "/productpage")
    assert status == 200


# --- dashboard ----------------------------------------------------------------
# The dashboard addon of the demo profile, in headless Chromium, after Bookinfo
# traffic through the ingress gateway.


def test_dashboard_graph_shows_bookinfo_with_mtls(demo_mesh: E2EMesh, tmp_path: Path) -> None:
    require_chromium()
    url = demo_mesh.cli("dashboard", "--print-url").stdout.strip()
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
