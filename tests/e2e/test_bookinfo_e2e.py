"""Bookinfo in a local mesh, brought up with `pilotfish up` exactly as a user does.

Transparent mode: every pod in its own network namespace, its traffic captured
by iptables into its sidecar; apps dial plain names like http://reviews:9080.
"""

from __future__ import annotations

import os
import signal
import textwrap

import pytest
from e2ekit import NETWORKING, E2EMesh, http_get, poll

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]


def test_productpage_through_ingress_gateway(transparent_mesh: E2EMesh) -> None:
    mesh = transparent_mesh
    status, body = http_get(mesh.ingress + "/productpage")
    assert status == 200
    page = body.decode()
    assert "The Comedy of Errors" in page
    assert "Reviewer1" in page
    pods = {p["name"]: p for p in mesh.pods()}
    for name in ("productpage-v1-0", "details-v1-0", "ratings-v1-0", "reviews-v1-0"):
        assert pods[name]["ready"] is True
        assert pods[name]["ip"].startswith("198.18.240.")
        assert pods[name]["sidecar_sync"] == "SYNCED"
    # The ingress gateway is listed like a pod: ready, synced, with its agent's pid.
    gateway = pods["istio-ingressgateway"]
    assert gateway["gateway"] is True and gateway["ready"] is True
    assert gateway["sidecar_sync"] == "SYNCED"
    assert isinstance(gateway["sidecar_pid"], int) and gateway["restarts"] == 0


def test_request_crosses_both_sidecars_while_app_dials_plain_name(
    transparent_mesh: E2EMesh,
) -> None:
    mesh = transparent_mesh
    mesh.cli(
        "apply",
        "-f",
        str(NETWORKING / "destination-rule-all.yaml"),
        "-f",
        str(NETWORKING / "virtual-service-all-v1.yaml"),
    )
    mesh.converge({"v1"})
    out_stat = "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total"
    in_stat = "cluster.inbound|9080||.upstream_rq_total"
    before_out = mesh.envoy_stat("productpage-v1-0", out_stat)
    before_in = mesh.envoy_stat("reviews-v1-0", in_stat)
    n = 10
    bodies = [mesh.reviews() for _ in range(n)]
    assert {b["version"] for b in bodies} == {"v1"}
    # productpage called http://reviews:9080 (the Host it sent is the plain name) ...
    assert {b["host"] for b in bodies} == {"reviews:9080"}
    # ... and the client sidecar routed it, and the server sidecar received it.
    assert mesh.envoy_stat("productpage-v1-0", out_stat) - before_out == n
    assert mesh.envoy_stat("reviews-v1-0", in_stat) - before_in == n


def test_routing_samples_give_expected_distributions(transparent_mesh: E2EMesh) -> None:
    mesh = transparent_mesh
    mesh.cli(
        "apply",
        "-f",
        str(NETWORKING / "destination-rule-all.yaml"),
        "-f",
        str(NETWORKING / "virtual-service-all-v1.yaml"),
    )
    mesh.converge({"v1"})
    assert mesh.versions(50) == {"v1": 50}

    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-reviews-50-v3.yaml"))
    mesh.converge({"v1", "v3"})
    counts = mesh.versions(200)
    assert set(counts) == {"v1", "v3"}, counts
    # Binomial sd at p=0.5, n=200 is 0.035: 4 sd either side.
    assert 0.36 <= counts["v1"] / 200 <= 0.64, counts

    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-reviews-v3.yaml"))
    mesh.converge({"v3"})
    assert mesh.versions(50) == {"v3": 50}

    mesh.cli("apply", "-f", str(NETWORKING / "virtual-service-reviews-test-v2.yaml"))
    mesh.converge({"v2"}, headers={"end-user": "jason"})
    assert mesh.versions(30, headers={"end-user": "jason"}) == {"v2": 30}
    assert mesh.versions(30) == {"v1": 30}


def test_killed_app_is_restarted(transparent_mesh: E2EMesh) -> None:
    mesh = transparent_mesh
    pod = mesh.pod("details-v1-0")
    os.kill(int(pod["app_pid"]), signal.SIGKILL)

    def restarted() -> bool:
        now = mesh.pod("details-v1-0")
        return now["restarts"] >= pod["restarts"] + 1 and now["ready"] is True

    poll(restarted, "details to be restarted and ready")

    # Ready in the runtime registers the pod; productpage's sidecar learns the
    # endpoint with the next EDS push, so the page recovers shortly after.
    def details_served() -> bool:
        status, body = http_get(mesh.ingress + "/productpage")
        return status == 200 and b"Book Details" in body

    poll(details_served, "productpage to show details again", 30.0)


def test_job_workload_completes_and_its_pod_ends(transparent_mesh: E2EMesh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    mesh = transparent_mesh
    job = tmp_path / "job.yaml"
    job.write_text(
        textwrap.dedent("""\
        apiVersion: pilotfish.io/v1alpha1
        kind: Workload
        metadata: {name: smoke-job, namespace: default, labels: {app: smoke-job}}
        spec:
          restartPolicy: Never
          command:
          - python
          - -c
          - |
            import json, urllib.request
            with urllib.request.urlopen("http://details:9080/details/0", timeout=10) as r:
                print("details says", json.load(r)["author"])
        """)
    )
    mesh.cli("apply", "-f", str(job))
    pod = poll(
        lambda: next(
            (
                p
                for p in mesh.pods()
                if p["name"] == "smoke-job-0" and p["phase"] in ("Succeeded", "Failed")
            ),
            None,
        ),
        "the job to finish",
        deadline=90,
    )
    assert pod["phase"] == "Succeeded", mesh.cli("logs", "smoke-job-0").stdout
    assert "details says William Shakespeare" in mesh.cli("logs", "smoke-job-0").stdout
    sidecar = int(pod["sidecar_pid"]) if pod.get("sidecar_pid") else 0

    def sidecar_gone() -> bool:
        if not sidecar:
            return True
        try:
            os.kill(sidecar, 0)
        except ProcessLookupError:
            return True
        return False

    poll(sidecar_gone, "the job's sidecar to exit", deadline=30)
    mesh.cli("delete", "-f", str(job))
