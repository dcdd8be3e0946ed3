"""A supervisor killed with -9 and started again re-adopts the running mesh.

Under a steady load through the ingress gateway: no request fails while the
supervisor is dead or while the new one takes over, no pod or gateway process
is restarted, routing changes flow again afterwards, and `down` still removes
everything, adopted processes included.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from e2ekit import (
    NETWORKING,
    SAMPLES,
    E2EMesh,
    free_port,
    host_leftovers,
    http_get,
    poll,
    processes_mentioning,
    require_root,
)

from lanes import lane_bridge

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.timeout(600)]
BRIDGE = lane_bridge("pfe2r")

_WORKERS = 4
_PACE = 0.02  # seconds between a worker's requests: at most ~200 requests a second
_MAX_REQUESTS = 10000  # per worker
_MAX_SECONDS = 240.0


class _Load:
    """GETs on loopback from a few threads, each at a bounded pace, count and time.

    Each worker cycles through ``urls``; answers 200 are counted, everything else
    (other statuses, errors) is recorded.
    """

    def __init__(self, urls: list[str], workers: int = _WORKERS) -> None:
        self.urls = urls
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + _MAX_SECONDS
        for i in range(_MAX_REQUESTS):
            if self._halt.is_set() or time.monotonic() > deadline:
                return
            url = self.urls[i % len(self.urls)]
            try:
                status, _body = http_get(url, timeout=5)
                failure = None if status == 200 else f"{url}: HTTP {status}"
            except OSError as exc:
                failure = f"{url}: {exc!r}"
            with self._lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {failure}")
            self._halt.wait(_PACE)

    def wait_for(self, more: int, what: str) -> None:
        target = self.ok + more
        poll(lambda: self.ok >= target or self.failures, what, deadline=60)

    def finish(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=30)


def _supervisor(mesh: E2EMesh) -> int:
    return int(json.loads((mesh.state_dir / "state.json").read_text())["pid"])


_PRODUCTPAGE = "cluster.outbound|9080||productpage.default.svc.cluster.local"
# Counters of the ingress gateway's Envoy that any change of its configuration
# or of the productpage endpoints would move.
_UNCHANGED = (
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    f"{_PRODUCTPAGE}.membership_change",
)


def _gateway_stats(mesh: E2EMesh) -> dict[str, int]:
    state = json.loads((mesh.state_dir / "state.json").read_text())
    admin = state["gateways"]["istio-ingressgateway"]["admin_port"]
    _status, body = http_get(f"http://127.0.0.1:{admin}/stats")
    stats = {}
    for line in body.decode().splitlines():
        name, _, value = line.partition(": ")
        if value.isdigit():
            stats[name] = int(value)
    return stats


def _processes(mesh: E2EMesh) -> dict[str, tuple[object, ...]]:
    """name -> (app pid, sidecar or gateway agent pid, restarts, identity, certificate
    expiry) of every pod and gateway."""
    return {
        p["name"]: (
            p.get("app_pid"),
            p.get("sidecar_pid"),
            p.get("restarts"),
            p.get("identity"),
            p.get("cert_expires"),
        )
        for p in mesh.pods()
    }


@pytest.mark.parametrize("mode", ["transparent", "explicit"])
def test_supervisor_restart_readopts_pods_without_failed_requests(
    tmp_path: Path, mode: str
) -> None:
    if mode == "transparent":
        require_root()
    mesh = E2EMesh(tmp_path / "state", mode, free_port(), free_port(), free_port(), BRIDGE)
    manifests = (SAMPLES / "bookinfo.yaml", NETWORKING / "bookinfo-gateway.yaml")
    load: _Load | None = None
    try:
        mesh.up(*manifests)
        before = _processes(mesh)
        assert len(before) == 7  # six Bookinfo pods and the ingress gateway
        assert all(row[1] and row[3] for row in before.values()), before

        stats = _gateway_stats(mesh)
        assert stats[f"{_PRODUCTPAGE}.membership_healthy"] == 1

        # The page, and the API calls that fail with the service behind them
        # (the page itself renders errors of its backends as a 200).
        paths = ("/productpage", "/api/v1/products/0", "/api/v1/products/0/reviews")
        load = _Load([mesh.ingress + path for path in paths])
        load.start()
        load.wait_for(100, "the load to run")

        first = _supervisor(mesh)
        killed_at, ok_at_kill = time.monotonic(), load.ok
        os.kill(first, signal.SIGKILL)
        poll(lambda: not os.path.exists(f"/proc/{first}"), "the supervisor to die")
        # Envoys keep serving their last configuration meanwhile.
        load.wait_for(100, "requests while no supervisor runs")

        mesh.up(*manifests)
        ready_after = time.monotonic() - killed_at
        ok_while_away = load.ok - ok_at_kill
        assert _supervisor(mesh) != first
        log = (mesh.state_dir / "logs" / "supervisor.log").read_text(errors="replace")
        second = log[log.rindex("network ready") :]
        # Registered before the new control plane served anything: its first
        # configuration already lists every adopted endpoint.
        assert "adopted 6 running pods (6 ready)" in second
        assert second.index("adopted 6 running pods") < second.index("control plane ready at")
        state = json.loads((mesh.state_dir / "state.json").read_text())
        assert state["message"] == "adopted 6 running pods (6 ready)"  # `up` prints it
        # The gateway's Envoy is configured by the new control plane, and that
        # configuration is the one it had: nothing modified, no endpoint change
        # (a first push without the adopted endpoints would show here).
        poll(
            lambda: (
                (now := _gateway_stats(mesh))["control_plane.connected_state"] == 1
                and now["cluster_manager.cds.update_success"]
                > stats["cluster_manager.cds.update_success"]
            ),
            "the gateway to be configured by the new control plane",
        )
        load.wait_for(200, "requests after the new supervisor took over")
        now = _gateway_stats(mesh)
        assert {k: now.get(k, 0) for k in _UNCHANGED} == {k: stats.get(k, 0) for k in _UNCHANGED}
        # The very same processes (and certificates): nothing was restarted.
        assert _processes(mesh) == before

        load.finish()
        assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures}"
        print(
            f"\n[{mode}] {load.ok} requests, 0 failed; {ok_while_away} of them between the kill"
            f" and the new supervisor being ready ({ready_after:.1f}s)"
        )

        # The new control plane configures the adopted proxies.
        mesh.cli(
            "apply",
            "-f",
            str(NETWORKING / "destination-rule-all.yaml"),
            "-f",
            str(NETWORKING / "virtual-service-reviews-v3.yaml"),
        )
        mesh.converge({"v3"})
        # Adopted processes are supervised as before: a dead app is restarted (on
        # the ports recorded for it) and its pod turns ready again ...
        details = mesh.pod("details-v1-0")
        os.kill(int(details["app_pid"]), signal.SIGKILL)
        poll(
            lambda: (
                (p := mesh.pod("details-v1-0"))["restarts"] == 1
                and p["ready"]
                and p["app_pid"] not in (None, details["app_pid"])
            ),
            "the adopted app to be restarted and ready",
        )
        # ... and so is a dead gateway.
        gateway = mesh.pod("istio-ingressgateway")
        os.kill(int(gateway["sidecar_pid"]), signal.SIGKILL)
        poll(
            lambda: mesh.pod("istio-ingressgateway")["restarts"] == 1,
            "the adopted gateway to be restarted",
        )
        poll(
            lambda: http_get(mesh.ingress + "/productpage")[0] == 200,
            "the restarted gateway to serve",
        )
    finally:
        if load is not None:
            load.finish()
        mesh.cli("down", check=False)
    assert host_leftovers(BRIDGE) == []
    poll(lambda: processes_mentioning(str(mesh.state_dir)) == [], "processes to be gone", 10)
    assert processes_mentioning("pilotfish.samples.bookinfo", mesh.state_dir) == []
