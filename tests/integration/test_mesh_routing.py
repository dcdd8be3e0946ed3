"""Traffic through real sidecars follows the configuration, and keeps following it live."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from meshkit import Mesh, free_port, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""

WORKLOADS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v1, namespace: default}}
spec: {{address: {ip1}, labels: {{app: reviews, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v2, namespace: default}}
spec: {{address: {ip2}, labels: {{app: reviews, version: v2}}}}
"""

HEADER_ROUTE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""

SPLIT_80_20 = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
"""

ALL_V2 = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
"""


def _subset(outcome: dict[str, object]) -> str:
    """The subset of the single cluster ``pilotfish explain`` predicts (its version)."""
    cluster = outcome["cluster"]
    assert isinstance(cluster, str), outcome
    return cluster.split("|")[2]


async def _bookinfo_reviews(mesh: Mesh, routing: str):  # type: ignore[no-untyped-def]
    """reviews v1 + v2 behind their sidecars, and a client sidecar; all ready."""
    ip1, ip2 = mesh.new_ip(), mesh.new_ip()
    mesh.write("reviews.yaml", SERVICE)
    mesh.write("workloads.yaml", WORKLOADS.format(ip1=ip1, ip2=ip2))
    mesh.write("routing.yaml", routing)
    port1, port2 = await mesh.app("reviews", "v1"), await mesh.app("reviews", "v2")
    labels = {"app": "reviews"}
    s1 = mesh.agent(
        "reviews-v1", ip=ip1, labels={**labels, "version": "v1"}, app_ports={9080: port1}
    )
    s2 = mesh.agent(
        "reviews-v2", ip=ip2, labels={**labels, "version": "v2"}, app_ports={9080: port2}
    )
    client = mesh.agent("productpage", labels={"app": "productpage"})
    for p in (s1, s2, client):
        await mesh.ready(p)
    return client


async def test_header_match_routes_to_subset(mesh: Mesh) -> None:
    client = await _bookinfo_reviews(mesh, HEADER_ROUTE)
    for host in ("reviews:9080", "reviews.default:9080", "reviews.default.svc.cluster.local:9080"):
        assert await mesh.versions(client, host, 10) == {"v1": 10}
        jason = await mesh.versions(client, host, 10, headers={"end-user": "jason"})
        assert jason == {"v2": 10}
        # `pilotfish explain` predicts the subset Envoy chose, from the same IR.
        assert _subset(await mesh.explain(client, f"http://{host}/")) == "v1"
        explained = await mesh.explain(client, f"http://{host}/", headers={"end-user": "jason"})
        assert _subset(explained) == "v2"
        assert explained["authz"] == "ALLOW" and explained["status"] is None
    # The request really crossed the server sidecar: Envoy adds x-request-id
    # on the client side and the server app sees the caller's headers.
    status, body = await mesh.call(client, "reviews:9080", "/ping?x=1")
    assert status == 200 and isinstance(body, dict)
    assert body["path"] == "/ping" and body["query"] == {"x": "1"}
    assert "X-Request-Id" in {k.title() for k in body["headers"]}
    # An unknown host gets Envoy's 404 (no route), not some other service.
    status, _ = await mesh.call(client, "nosuch:9080")
    assert status == 404
    assert (await mesh.explain(client, "http://nosuch:9080/"))["status"] == 404


async def _cli_explain(mesh: Mesh, *args: str) -> dict[str, object]:
    # The CLI runs in a thread: the control plane answering it lives in this event loop.
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pilotfish.cli.main", "explain", "--control-plane", mesh.api,
         "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=mesh.cli_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout)["outcome"]
    assert isinstance(outcome, dict)
    return outcome


async def test_explain_cli_and_a_change_checked_before_apply(mesh: Mesh, tmp_path: Path) -> None:
    client = await _bookinfo_reviews(mesh, HEADER_ROUTE)
    assert await mesh.versions(client, "reviews:9080", 3) == {"v1": 3}
    url = "http://reviews:9080/"
    assert _subset(await _cli_explain(mesh, "--from", "productpage", url)) == "v1"
    jason = await _cli_explain(mesh, "--from", "productpage", url, "-H", "end-user: jason")
    assert _subset(jason) == "v2"
    # --config: the change applied over the live configuration, in memory only.
    pending = tmp_path / "pending"
    pending.mkdir()
    (pending / "routing.yaml").write_text(ALL_V2)
    assert (
        _subset(await _cli_explain(mesh, "--from", "productpage", url, "--config", str(pending)))
        == "v2"
    )
    assert await mesh.versions(client, "reviews:9080", 3) == {"v1": 3}
    # Applied, Envoy does what explain said.
    mesh.write("routing.yaml", ALL_V2)

    async def all_v2() -> bool:
        return await mesh.versions(client, "reviews:9080", 3) == {"v2": 3}

    await poll(all_v2, "the change to reach Envoy", deadline=10)


async def test_weighted_split_lands_within_tolerance(mesh: Mesh) -> None:
    client = await _bookinfo_reviews(mesh, SPLIT_80_20)
    n = 400
    counts = await mesh.versions(client, "reviews:9080", n)
    assert set(counts) <= {"v1", "v2"}, counts
    # explain names both weighted clusters with the configured weights.
    explained = await mesh.explain(client, "http://reviews:9080/")
    weights = {name.split("|")[2]: w for name, w in explained["clusters"].items()}
    assert weights == {"v1": 80, "v2": 20} and explained["cluster"] is None
    share = counts.get("v1", 0) / n
    # Binomial sd at p=0.8, n=400 is 0.02: 4 sd either side.
    assert 0.72 <= share <= 0.88, counts


async def test_file_edit_converges_and_broken_file_keeps_last_good(mesh: Mesh) -> None:
    client = await _bookinfo_reviews(mesh, HEADER_ROUTE)
    assert await mesh.versions(client, "reviews:9080", 5) == {"v1": 5}

    started = time.monotonic()
    mesh.write("routing.yaml", ALL_V2)

    async def all_v2() -> bool:
        return await mesh.versions(client, "reviews:9080", 3) == {"v2": 3}

    await poll(all_v2, "the edit to reach Envoy", deadline=10)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"edit took {elapsed:.2f}s to converge"

    # Break the file: a typo'd field. The last good routing keeps serving.
    broken = ALL_V2.replace("subset: v2", "subset: v2, wieght: 5")
    path = mesh.write("routing.yaml", broken)

    async def error_reported() -> list[dict[str, object]]:
        configz = await mesh.get_json("/debug/configz")
        return [e for e in configz["errors"] if e["file"] == str(path)]

    errors = await poll(error_reported, "the broken file to be reported")
    assert errors[0]["line"] == 7
    assert "wieght" in str(errors[0]["field"]) or "wieght" in str(errors[0]["message"])
    for _ in range(3):
        assert await mesh.versions(client, "reviews:9080", 5) == {"v2": 5}
        await asyncio.sleep(0.2)  # spread requests over a few polls of the store
    # explain reads the last good configuration too.
    assert _subset(await mesh.explain(client, "http://reviews:9080/")) == "v2"

    # `pilotfish analyze` reports the same problem offline, with file and line.
    proc = subprocess.run(
        [sys.executable, "-m", "pilotfish.cli.main", "analyze", str(mesh.config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{path}:7: VirtualService default/reviews: " in proc.stdout

    # Metrics count the error.
    assert mesh.session is not None
    async with mesh.session.get(mesh.api + "/metrics") as resp:
        metrics = await resp.text()
    assert "pilotfish_config_errors 1.0" in metrics

    # Fixing the file clears the error and applies the new routing.
    mesh.write("routing.yaml", HEADER_ROUTE)
    await poll(lambda: _no_errors(mesh), "the error to clear")

    async def back_to_v1() -> bool:
        return await mesh.versions(client, "reviews:9080", 3) == {"v1": 3}

    await poll(back_to_v1, "the fixed file to apply")


async def _no_errors(mesh: Mesh) -> bool:
    return not (await mesh.get_json("/debug/configz"))["errors"]


async def test_nack_shows_in_proxy_status_and_old_config_serves(mesh: Mesh) -> None:
    client = await _bookinfo_reviews(mesh, HEADER_ROUTE)
    server = next(p for p in mesh.proxies if p.name == "reviews-v1")
    # Valid configuration that Envoy cannot apply: a new service port whose
    # inbound listener would bind an address another process already holds.
    with socket.socket() as squatter:
        squatter.bind((server.ip, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        mesh.write(
            "reviews.yaml",
            SERVICE.replace(
                "ports: [{name: http, port: 9080}]",
                "ports: [{name: http, port: 9080}, "
                f"{{name: http-admin, port: 9443, targetPort: {taken}}}]",
            ),
        )

        async def nacked() -> list[dict[str, object]]:
            rows = await mesh.get_json("/debug/syncz")
            return [
                r
                for r in rows
                if r["proxy_id"] == server.proxy_id and r["types"]["LDS"]["nack_message"]
            ]

        rows = await poll(nacked, "the NACK to be recorded")
    assert str(taken) in str(rows[0]["types"]["LDS"]["nack_message"])
    # Sidecars speak incremental xDS by default, and the NACK is contained there too.
    assert {r["protocol"] for r in await mesh.get_json("/debug/syncz")} == {"delta"}
    # The CLI runs in a thread: the control plane answering it lives in this event loop.
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pilotfish.cli.main", "proxy-status", "--control-plane", mesh.api],
        capture_output=True,
        text=True,
        timeout=60,
        env=mesh.cli_env(),
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.strip().startswith(server.proxy_id))
    assert "NACKED" in line and line.split()[-1] == "delta"
    assert f"NACK {server.proxy_id} LDS:" in proc.stdout
    # The NACK is not re-sent in a loop: the sent version stays the rejected one.
    rows = await mesh.get_json("/debug/syncz")
    lds = next(r for r in rows if r["proxy_id"] == server.proxy_id)["types"]["LDS"]
    assert lds["nack_version"] == lds["sent_version"] != lds["acked_version"]
    # The old configuration still serves, through the server sidecar too.
    assert await mesh.versions(client, "reviews:9080", 5) == {"v1": 5}
    # proxy-config shows what was sent.
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "pilotfish.cli.main",
            "proxy-config",
            "clusters",
            client.proxy_id,
            "--control-plane",
            mesh.api,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=mesh.cli_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert "reviews.default.svc.cluster.local" in proc.stdout and "v2" in proc.stdout


GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{{uri: {{prefix: /reviews/}}}}]
    rewrite: {{uri: /}}
    route: [{{destination: {{host: reviews, subset: v2, port: {{number: 9080}}}}}}]
"""


async def test_ingress_gateway_routes_bound_virtual_service(mesh: Mesh) -> None:
    await _bookinfo_reviews(mesh, HEADER_ROUTE)
    gw_ip = mesh.new_ip()
    port = free_port(gw_ip)
    mesh.write("gateway.yaml", GATEWAY.format(port=port))
    gateway = mesh.agent(
        "istio-ingressgateway",
        namespace="istio-system",
        ip=gw_ip,
        labels={"istio": "ingressgateway"},
        role="gateway",
    )
    await mesh.ready(gateway)
    assert mesh.session is not None

    async def reviews_v2() -> dict[str, object] | None:
        assert mesh.session is not None
        async with mesh.session.get(f"http://{gw_ip}:{port}/reviews/x") as resp:
            body = await resp.json() if resp.status == 200 else None
            return body if body and body.get("version") == "v2" else None

    body = await poll(reviews_v2, "the gateway route")
    assert body["path"] == "/x"  # prefix rewrite
    async with mesh.session.get(f"http://{gw_ip}:{port}/other") as resp:
        assert resp.status == 404  # no route for this path at the gateway
    # explain, from the gateway's proxy, agrees on both.
    assert _subset(await mesh.explain(gateway, f"http://{gw_ip}:{port}/reviews/x")) == "v2"
    assert (await mesh.explain(gateway, f"http://{gw_ip}:{port}/other"))["status"] == 404
