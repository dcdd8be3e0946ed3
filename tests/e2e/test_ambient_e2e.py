"""Bookinfo without sidecars: `pilotfish up --dataplane ambient`, the host's node
proxy carrying every pod's traffic in HBONE (HTTP/2 CONNECT over mTLS).

One mesh for the module. What is checked is what a user observes: the
product page through the ingress gateway, which pod's calls a principal-based
L4 policy refuses, a plaintext client on the host refused under STRICT, the
node proxy's own counters, a pod added and removed while the node proxy's
Envoy keeps running, and nothing left on the host after `down`.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import SAMPLES, E2EMesh, down_leaves_nothing, free_port, http_get, poll, require_root

from lanes import lane_bridge

BRIDGE = lane_bridge("pfe2a")
BOOKINFO_PODS = {
    "details-v1-0",
    "productpage-v1-0",
    "ratings-v1-0",
    "reviews-v1-0",
    "reviews-v2-0",
    "reviews-v3-0",
}

DENY_PRODUCTPAGE = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-not-from-productpage, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-productpage]}}]
"""

STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"""

RATINGS_V2 = """
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata:
  name: ratings-v2
  labels: {app: ratings, version: v2}
spec:
  replicas: 1
  serviceAccount: bookinfo-ratings
  command: ["python", "-m", "pilotfish.samples.bookinfo.ratings"]
  ports: [{name: http, containerPort: 9080}]
  readinessProbe: {httpGet: {path: /health, port: http}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EMesh]:
    require_root()
    tmp = tmp_path_factory.mktemp("ambient")
    mesh = E2EMesh(tmp / "state", "transparent", free_port(), free_port(), free_port(), BRIDGE)
    mesh.extra_up_args = ("--dataplane", "ambient")
    try:
        mesh.up(SAMPLES / "bookinfo.yaml", SAMPLES / "networking" / "bookinfo-gateway.yaml")
        yield mesh
    finally:
        down_leaves_nothing(mesh, BRIDGE)


def _state(mesh: E2EMesh) -> dict[str, object]:
    return dict(json.loads((mesh.state_dir / "state.json").read_text()))


def _netns(mesh: E2EMesh, pod: str) -> str:
    pods = _state(mesh)["pods"]
    assert isinstance(pods, dict)
    return str(pods[f"default/{pod}"]["netns"])


def _node_proxy_admin(mesh: E2EMesh, path: str) -> str:
    gateways = _state(mesh)["gateways"]
    assert isinstance(gateways, dict)
    port = gateways["node-proxy"]["admin_port"]
    status, body = http_get(f"http://127.0.0.1:{port}{path}")
    assert status == 200, body
    return body.decode()


def _node_proxy_stat(mesh: E2EMesh, name: str) -> int:
    for line in _node_proxy_admin(mesh, f"/stats?filter=^{name}$").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def _curl_from(mesh: E2EMesh, pod: str, url: str, *headers: str) -> str:
    """The HTTP status a client inside ``pod``'s network namespace gets ("000": no
    answer). Its traffic is captured like the pod's app: it has the pod's identity."""
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            _netns(mesh, pod),
            "curl",
            "-s",
            "-m",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=15,
    )
    return out.stdout.strip()


def _apply(mesh: E2EMesh, tmp: Path, text: str) -> Path:
    path = tmp / f"obj-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    mesh.cli("apply", "-f", str(path))
    return path


def _node_proxy_processes(mesh: E2EMesh) -> tuple[int, int]:
    """(agent pid, Envoy pid) of the node proxy."""
    row = mesh.pod("node-proxy")
    agent = int(row["sidecar_pid"])
    children = Path(f"/proc/{agent}/task/{agent}/children").read_text().split()
    envoys = [int(c) for c in children if "envoy" in Path(f"/proc/{c}/cmdline").read_text()]
    assert len(envoys) == 1, children
    return agent, envoys[0]


def test_bookinfo_serves_through_the_gateway_with_no_sidecar(mesh: E2EMesh) -> None:
    status, body = http_get(mesh.ingress + "/productpage")
    assert status == 200 and b"Book Details" in body
    rows = {p["name"]: p for p in mesh.pods()}
    assert {n for n, p in rows.items() if p.get("dataplane") == "ambient"} == BOOKINFO_PODS
    assert rows["node-proxy"]["ready"] and rows["node-proxy"]["dataplane"] == "node-proxy"
    # No Envoy runs inside any pod: only the app and its readiness process.
    for pod in BOOKINFO_PODS:
        pids = subprocess.run(
            ["ip", "netns", "pids", _netns(mesh, pod)], capture_output=True, text=True, check=True
        ).stdout.split()
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids]
        assert commands and not any(b"envoy" in c for c in commands), (pod, commands)

    # The product's reviews come back (through productpage's tunnel to a reviews pod,
    # which is kept: L4 balances connections, not requests).
    assert "reviews" in mesh.reviews(), mesh.reviews()
    assert _curl_from(mesh, "reviews-v2-0", "http://ratings:9080/health") == "200"


def test_pod_to_pod_calls_are_hbone_tunnels(mesh: E2EMesh) -> None:
    for _ in range(3):
        assert http_get(mesh.ingress + "/productpage")[0] == 200
    # productpage's call to details left through productpage's outbound listener
    # and arrived as a CONNECT stream on the details pod's HBONE listener.
    outbound = (
        "tcp.ambient_outbound|9080|details.default.svc.cluster.local|productpage-v1-0.default"
    )
    assert _node_proxy_stat(mesh, f"{outbound}.downstream_cx_total") >= 1
    assert (
        _node_proxy_stat(mesh, "http.ambient_hbone|details-v1-0.default.downstream_rq_total") >= 1
    )
    # Istio's TCP metrics, with the pods' workload labels, on the node proxy's metrics port.
    gateways = _state(mesh)["gateways"]
    assert isinstance(gateways, dict)
    metrics_url = f"http://127.0.0.1:{gateways['node-proxy']['status_port']}/stats/prometheus"

    def reported() -> list[str]:
        text = http_get(metrics_url)[1].decode()
        return [
            line
            for line in text.splitlines()
            if line.startswith("istio_tcp_connections_opened_total{")
            and 'reporter="destination"' in line
            and 'destination_workload="details-v1"' in line
            and 'source_principal="spiffe://cluster.local/ns/default/sa/bookinfo-productpage"'
            in line
            # From the CONNECT request's headers, set by productpage's node proxy.
            and 'source_workload="productpage-v1"' in line
            and 'source_app="productpage"' in line
            and 'destination_service="details.default.svc.cluster.local"' in line
        ]

    poll(reported, "istio_tcp_connections_opened_total for details", deadline=20)
    sources = [
        line
        for line in http_get(metrics_url)[1].decode().splitlines()
        if line.startswith("istio_tcp_connections_opened_total{")
        and 'reporter="source"' in line
        and 'source_workload="productpage-v1"' in line
        and 'destination_service="details.default.svc.cluster.local"' in line
    ]
    # (Bytes and closed connections are counted when productpage's pooled
    # connection ends.)
    assert sources, "no source-side TCP connection for productpage -> details"
    # A connection that ends (curl's) is counted with its bytes at both ends.
    assert _curl_from(mesh, "ratings-v1-0", "http://details:9080/health") == "200"

    def bytes_counted() -> bool:
        text = http_get(metrics_url)[1].decode()
        ratings = 'source_principal="spiffe://cluster.local/ns/default/sa/bookinfo-ratings"'
        return any(
            line.startswith("istio_tcp_received_bytes_total{")
            and 'reporter="destination"' in line
            and ratings in line
            and 'destination_workload="details-v1"' in line
            and float(line.rsplit(" ", 1)[1]) > 0
            for line in text.splitlines()
        )

    poll(bytes_counted, "bytes of ratings' connection to details", deadline=20)
    certs = json.loads(_node_proxy_admin(mesh, "/certs"))["certificates"]
    sans = {
        san["uri"]
        for cert in certs
        for chain in cert.get("cert_chain", [])
        for san in chain.get("subject_alt_names", [])
        if "uri" in san
    }
    # One certificate per service account of the host's pods, plus its own.
    assert {
        "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
        "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
        "spiffe://cluster.local/ns/istio-system/sa/node-proxy",
    } <= sans


def test_l4_deny_by_principal_blocks_exactly_that_caller(mesh: E2EMesh, tmp_path: Path) -> None:
    url = "http://reviews:9080/health"
    assert _curl_from(mesh, "productpage-v1-0", url) == "200"
    policy = _apply(mesh, tmp_path, DENY_PRODUCTPAGE)
    try:
        # The destination's node proxy refuses the tunnel of productpage's identity...
        poll(
            lambda: _curl_from(mesh, "productpage-v1-0", url) == "000",
            "productpage refused by reviews",
            deadline=30,
        )
        # ...and only it: ratings (another identity) still gets through.
        assert _curl_from(mesh, "ratings-v1-0", url) == "200"
    finally:
        mesh.cli("delete", "-f", str(policy))
    poll(lambda: _curl_from(mesh, "productpage-v1-0", url) == "200", "policy removed", 30)


def test_strict_refuses_a_plaintext_client_outside_the_mesh(mesh: E2EMesh, tmp_path: Path) -> None:
    pods = _state(mesh)["pods"]
    assert isinstance(pods, dict)
    direct = f"http://{pods['default/ratings-v1-0']['ip']}:9080/health"
    assert http_get(direct)[0] == 200  # PERMISSIVE: plaintext from the host passes
    strict = _apply(mesh, tmp_path, STRICT)
    try:

        def refused() -> bool:
            try:
                http_get(direct, timeout=3)
            except OSError:
                return True
            return False

        poll(refused, "plaintext refused under STRICT", deadline=30)
        # Mesh traffic is mTLS: the gateway (Istio mTLS) and pods (HBONE) still pass.
        assert http_get(mesh.ingress + "/productpage")[0] == 200
        assert _curl_from(mesh, "reviews-v1-0", "http://ratings:9080/health") == "200"
    finally:
        mesh.cli("delete", "-f", str(strict))
    poll(lambda: http_get(direct)[0] == 200, "plaintext passes again", 30)


def test_pods_come_and_go_without_a_node_proxy_restart(mesh: E2EMesh, tmp_path: Path) -> None:
    agent, envoy = _node_proxy_processes(mesh)
    uptime = json.loads(_node_proxy_admin(mesh, "/server_info"))["uptime_current_epoch"]
    listener = "ambient_hbone|ratings-v2-0.default"
    workload = _apply(mesh, tmp_path, RATINGS_V2)
    try:
        poll(lambda: mesh.pod("ratings-v2-0")["ready"], "ratings-v2 ready", deadline=60)
        assert listener in _node_proxy_admin(mesh, "/listeners")
        assert mesh.pod("ratings-v2-0")["dataplane"] == "ambient"
        # The new pod serves: some calls to ratings land on it.
        name = f"http.{listener}.downstream_rq_2xx"

        def served() -> bool:
            _curl_from(mesh, "reviews-v2-0", "http://ratings:9080/health")
            return _node_proxy_stat(mesh, name) > 0

        poll(served, "a call served by ratings-v2", deadline=30)
    finally:
        mesh.cli("delete", "-f", str(workload))
    poll(
        lambda: listener not in _node_proxy_admin(mesh, "/listeners"),
        "ratings-v2's listeners removed",
        deadline=60,
    )
    assert _node_proxy_processes(mesh) == (agent, envoy)
    info = json.loads(_node_proxy_admin(mesh, "/server_info"))
    assert _seconds(info["uptime_current_epoch"]) >= _seconds(uptime)
    assert mesh.pod("node-proxy")["restarts"] == 0


def _debug(mesh: E2EMesh) -> str:
    stats = _node_proxy_admin(mesh, "/stats?filter=sidecar-ratings")
    lines = [x for x in stats.splitlines() if not x.endswith((": 0", "No recorded values"))]
    return "\n".join(lines) + "\n" + _node_proxy_admin(mesh, "/clusters")[-3000:]


def _seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


def test_proxy_status_lists_the_node_proxy(mesh: E2EMesh) -> None:
    out = mesh.cli("proxy-status").stdout
    assert "node-proxy.istio-system" in out, out


SIDECAR_RATINGS = """
apiVersion: v1
kind: Service
metadata: {name: sidecar-ratings, namespace: default}
spec:
  selector: {app: sidecar-ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata:
  name: sidecar-ratings
  labels: {app: sidecar-ratings, istio.io/dataplane-mode: none}
spec:
  replicas: 1
  serviceAccount: bookinfo-ratings
  command: ["python", "-m", "pilotfish.samples.bookinfo.ratings"]
  ports: [{name: http, containerPort: 9080}]
  readinessProbe: {httpGet: {path: /health, port: http}}
"""


def test_a_pod_that_opts_out_gets_a_sidecar_and_talks_mtls_both_ways(
    mesh: E2EMesh, tmp_path: Path
) -> None:
    strict = _apply(mesh, tmp_path, STRICT)
    manifests = _apply(mesh, tmp_path, SIDECAR_RATINGS)
    try:
        poll(lambda: mesh.pod("sidecar-ratings-0")["ready"], "sidecar-ratings ready", 90)
        assert mesh.pod("sidecar-ratings-0")["dataplane"] == "sidecar"
        # Ambient -> sidecar: the node proxy speaks Istio mTLS to the sidecar (STRICT).
        poll(
            lambda: _curl_from(mesh, "reviews-v2-0", "http://sidecar-ratings:9080/health") == "200",
            "an ambient pod reaching a sidecar pod",
            deadline=30,
            context=lambda: _debug(mesh),
        )
        assert mesh.envoy_stat("sidecar-ratings-0", "listener.0.0.0.0_15006.ssl.handshake") > 0
        # Sidecar -> ambient: the sidecar's auto mTLS reaches the node proxy's inbound side.
        assert _curl_from(mesh, "sidecar-ratings-0", "http://details:9080/health") == "200"
    finally:
        mesh.cli("delete", "-f", str(manifests))
        mesh.cli("delete", "-f", str(strict))


# -- waypoints: L7 for the services that opt in ----------------------------------------

WAYPOINT = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: default, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"""

# The whole namespace's services use it (Bookinfo's Services are defined in the
# file ``up`` was given, which ``apply`` does not edit).
NAMESPACE_USES_WAYPOINT = """
apiVersion: v1
kind: Namespace
metadata:
  name: default
  labels: {istio.io/use-waypoint: waypoint}
"""

# Attached to the reviews Service, enforced by the waypoint: an L7 rule on a path.
DENY_REVIEWS_1 = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-reviews-1, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  action: DENY
  rules:
  - to: [{operation: {paths: [/reviews/1]}}]
"""

# By identity: the caller's SPIFFE id reaches the waypoint's policies.
RATINGS_FROM_REVIEWS_ONLY = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-from-reviews, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: ratings}]
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-reviews]}}]
"""

# By address (CALLER_IP is filled in): the caller's pod address reaches them too.
DENY_RATINGS_2_FROM_ONE_POD = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-ratings-2-from-one-pod, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: ratings}]
  action: DENY
  rules:
  - from: [{source: {ipBlocks: [CALLER_IP/32]}}]
    to: [{operation: {paths: [/ratings/2]}}]
"""

REVIEWS_90_10 = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details, namespace: default}
spec:
  hosts: [details]
  http:
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: details}}]
  - retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: details}}]
"""


def _waypoint_admin(path: str) -> str:
    """A page of the waypoint's Envoy admin, on loopback in its own namespace."""
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    (netns,) = [
        line.split()[0]
        for line in spaces.splitlines()
        if line.startswith(f"{BRIDGE}-") and "waypoint" in line
    ]
    return subprocess.run(
        ["ip", "netns", "exec", netns, "curl", "-s", "-m", "3", f"http://127.0.0.1:15000{path}"],
        capture_output=True, text=True, timeout=15,
    ).stdout  # fmt: skip


def _waypoint_request_series() -> list[tuple[dict[str, str], int]]:
    """Each ``istio_requests_total`` series of the waypoint's Envoy: its labels (its
    one packed tag unpacked, as the agent does when it serves them) and its count."""
    from pilotfish.packed_labels import unpack

    out = []
    for line in _waypoint_admin("/stats/prometheus").splitlines():
        if line.startswith('envoy_istio_requests_total{pilotfish_labels="'):
            packed, value = line.split('pilotfish_labels="', 1)[1].rsplit('"}', 1)
            out.append((dict(unpack(packed, {})), int(float(value))))
    return out


def _waypoint_requests() -> list[dict[str, str]]:
    """The labels of each ``istio_requests_total`` series of the waypoint's Envoy."""
    return [labels for labels, _ in _waypoint_request_series()]


def _waypoint_requests_to(service: str) -> int:
    """How many requests for ``service`` the waypoint has counted."""
    return sum(
        count
        for labels, count in _waypoint_request_series()
        if labels.get("destination_service_name") == service
    )


def test_a_waypoint_applies_l7_routing_and_policy_by_caller_to_the_services_that_use_it(
    mesh: E2EMesh, tmp_path: Path
) -> None:
    gateway = _apply(mesh, tmp_path, WAYPOINT)
    routes = _apply(mesh, tmp_path, REVIEWS_90_10)
    deny = _apply(mesh, tmp_path, DENY_REVIEWS_1)
    allow = _apply(mesh, tmp_path, RATINGS_FROM_REVIEWS_ONLY)
    label = block = None
    try:
        poll(lambda: mesh.pod("waypoint")["ready"], "the waypoint to be ready", 90)
        assert mesh.pod("waypoint")["dataplane"] == "waypoint"

        def programmed() -> bool:
            out = mesh.cli("get", "gateways.gateway.networking.k8s.io", "waypoint", "-o", "json")
            found = json.loads(out.stdout).get("status", {}).get("conditions", [])
            return any(c["type"] == "Programmed" and c["status"] == "True" for c in found)

        poll(programmed, "the waypoint Gateway's status to say Programmed", deadline=30)
        # (Without the label neither applies: the node proxies carry productpage's one
        # pooled connection to one reviews pod, L4 only.)
        assert _curl_from(mesh, "productpage-v1-0", "http://reviews:9080/reviews/1") == "200"
        label = _apply(mesh, tmp_path, NAMESPACE_USES_WAYPOINT)

        def through_waypoint() -> bool:
            # productpage's pooled connection to reviews predates the label: it goes
            # on to its pod until the node proxy's changed chain drains it. Only
            # reviews' own requests count: the waypoint also carries reviews' new
            # connections to ratings, while productpage's old one still bypasses it.
            before = _waypoint_requests_to("reviews")
            mesh.versions(5)
            return _waypoint_requests_to("reviews") - before >= 5

        poll(through_waypoint, "productpage's calls to go through the waypoint", deadline=30)
        counts = mesh.versions(200)
        # 90/10 over 200 requests: v2's count is 20 +- 4.2 (binomial); 5..40 is > 3.5 sd.
        assert set(counts) <= {"v1", "v2"} and 5 <= counts["v2"] <= 40, counts
        # Istio's request metrics, reported by the waypoint as itself, naming the
        # caller as its node proxy told the waypoint's HBONE listener.
        reported = _waypoint_requests()
        assert any(
            labels.get("reporter") == "waypoint"
            and labels.get("destination_workload") == "reviews-v2"
            and labels.get("destination_service_name") == "reviews"
            and labels.get("source_workload") == "productpage-v1"
            and labels.get("source_principal")
            == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
            and labels.get("response_code") == "200"
            for labels in reported
        ), reported[:3]
        # The L7 DENY on a path: exactly that path of reviews is refused.
        poll(
            lambda: _curl_from(mesh, "productpage-v1-0", "http://reviews:9080/reviews/1") == "403",
            "the waypoint to deny /reviews/1",
            deadline=20,
        )
        assert _curl_from(mesh, "productpage-v1-0", "http://reviews:9080/reviews/0") == "200"
        # A VirtualService's fault, injected by the waypoint for the requests it matches.
        details = "http://details:9080/details/0"
        assert _curl_from(mesh, "productpage-v1-0", details, "x-fault: abort") == "418"
        assert _curl_from(mesh, "productpage-v1-0", details) == "200"
        # The ALLOW by principal on ratings: reviews may call it, productpage may not,
        # each judged as itself however the calls interleave (the waypoint keys its
        # connections behind the HBONE listener by caller).
        for _ in range(3):
            assert _curl_from(mesh, "reviews-v2-0", "http://ratings:9080/ratings/1") == "200"
            assert _curl_from(mesh, "productpage-v1-0", "http://ratings:9080/ratings/1") == "403"
        reported = _waypoint_requests()
        for caller, code in (("reviews-v2", "200"), ("productpage-v1", "403")):
            assert any(
                labels.get("destination_service_name") == "ratings"
                and labels.get("source_workload") == caller
                and labels.get("response_code") == code
                for labels in reported
            ), (
                caller,
                code,
                [r for r in reported if r.get("destination_service_name") == "ratings"],
            )
        assert not any(
            labels.get("destination_service_name") == "ratings"
            and labels.get("source_workload") == "reviews-v2"
            and labels.get("response_code") == "403"
            for labels in reported
        ), "a call of reviews to ratings was judged as another caller"
        # A DENY by source address: one pod's calls to /ratings/2, no one else's.
        block = _apply(
            mesh,
            tmp_path,
            DENY_RATINGS_2_FROM_ONE_POD.replace("CALLER_IP", mesh.pod_ip("reviews-v2-0")),
        )
        poll(
            lambda: _curl_from(mesh, "reviews-v2-0", "http://ratings:9080/ratings/2") == "403",
            "the waypoint to deny reviews-v2-0's address /ratings/2",
            deadline=20,
        )
        assert _curl_from(mesh, "reviews-v3-0", "http://ratings:9080/ratings/2") == "200"
        # The address is the caller's connection's: a header cannot claim another.
        forged = f"X-Forwarded-For: {mesh.pod_ip('reviews-v2-0')}"
        assert _curl_from(mesh, "reviews-v3-0", "http://ratings:9080/ratings/2", forged) == "200"
        assert _curl_from(mesh, "reviews-v2-0", "http://ratings:9080/ratings/1") == "200"
        assert "waypoint.default" in mesh.cli("proxy-status").stdout
    finally:
        for extra in (label, block):
            if extra is not None:
                mesh.cli("delete", "-f", str(extra))
        for path in (allow, deny, routes, gateway):
            mesh.cli("delete", "-f", str(path))
    poll(lambda: "waypoint" not in {p["name"] for p in mesh.pods()}, "the waypoint gone", 60)
    poll(lambda: "reviews" in mesh.reviews(), "reviews served without the waypoint", 30)
