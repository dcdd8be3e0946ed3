"""``pilotfish join`` on loopback: the joined sidecar gets its identity and config, then leaves.

A real ``pilotfish control-plane`` (CA, xDS over mTLS only for the joined
proxy) and a real ``pilotfish join`` process running the agent and Envoy;
the "host" address is a loopback address of its own. Needs Envoy; run under
the shared e2e lock.
"""

from __future__ import annotations

import datetime
import time
import urllib.request
from pathlib import Path

from joinkit import (
    DEADLINE,
    GRACE,
    ControlPlaneProc,
    control_plane,
    processes_mentioning,
    start_join,
    stop_join,
)

from pilotfish.runtime.ports import free_port
from polling import poll

HOST = "127.0.0.77"


def _synced(cp: ControlPlaneProc, proxy: str) -> bool:
    return any(s["proxy_id"] == proxy and s.get("types") for s in cp.api("/debug/syncz"))


def _disconnected_at(cp: ControlPlaneProc) -> float | None:
    """When the entry was marked disconnected, from the control plane's own log line.

    The log and not the entry: the entry may already be gone when a slow poll looks.
    """
    marker = "ratings-vm-127-0-0-77 (disconnected at "
    for line in cp.log.read_text().splitlines():
        if marker in line:
            stamp = line.split(marker, 1)[1].rstrip(")")
            return datetime.datetime.fromisoformat(stamp).timestamp()
    return None


def _ready(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/ready", timeout=2) as resp:
        return resp.status == 200


def test_join_runs_an_identified_sidecar_and_stops_clean(tmp_path: Path) -> None:
    with control_plane(tmp_path) as cp:
        host = tmp_path / "host"
        host.mkdir()
        join_file = host / "join.token"
        grant = cp.create_token(join_file, "-n", "default", "--workload-group", "ratings-vm")
        assert grant["labels"] == {"app": "ratings", "version": "v4"}
        state = host / "state"
        admin, health = free_port(), free_port()
        argv = [
            "--control-plane",
            f"127.0.0.1:{cp.mtls_port}",
            "--token",
            str(join_file),
            "--address",
            HOST,
            "--app-port",
            f"9080={free_port()}",
            "--state-dir",
            str(state),
            "--admin-port",
            str(admin),
            "--health-port",
            str(health),
            "--agent-arg=--concurrency=1",
        ]
        log = host / "join.log"
        proc = start_join(host, argv, log)
        proxy = "ratings-vm-127-0-0-77.default"
        try:
            poll(
                lambda: proc.poll() is None and _ready(health),
                "the joined sidecar to be ready",
                DEADLINE,
                context=log.read_text,
            )
            poll(lambda: _synced(cp, proxy), "the joined proxy in syncz", DEADLINE)
            # Registered from the group: the host's address, the group's labels and ports.
            entry = cp.entry("ratings-vm-127-0-0-77")
            assert entry["spec"]["address"] == HOST
            assert entry["spec"]["ports"] == {"http": 9080}
            assert entry["spec"]["labels"]["version"] == "v4"
            assert entry["spec"]["serviceAccount"] == "bookinfo-ratings"
            annotations = entry["metadata"]["annotations"]
            assert annotations["istio.io/autoRegistrationGroup"] == "ratings-vm"
            # The token copy now holds the renewal token; the user's file is untouched.
            assert (state / "ca-token").read_text().strip() != grant["token"]
            assert (state / "ca-token").stat().st_mode & 0o777 == 0o600
            [issued] = [
                line for line in cp.log.read_text().splitlines() if "join token used by" in line
            ]
            assert "ratings-vm-" in issued and grant["token"] not in cp.log.read_text()
            assert processes_mentioning(str(state))
        finally:
            code = stop_join(proc)
        assert code == 0, log.read_text()
        assert not state.exists()
        assert processes_mentioning(str(state)) == []
        poll(lambda: not _synced(cp, proxy), "the joined proxy's stream to end", DEADLINE)
        # The grace period runs from the stamp the control plane wrote when the stream
        # ended, not from when this test saw it end: under load the test may see it late.
        since = poll(lambda: _disconnected_at(cp), "the disconnect to be recorded", DEADLINE)
        poll(lambda: cp.entry("ratings-vm-127-0-0-77") is None, "the entry to go", DEADLINE)
        assert time.time() - since >= GRACE - 0.05  # not before the grace period

        # The same join file again: the CA refuses it, and join says why.
        again = start_join(host, argv, host / "again.log")
        assert again.wait(DEADLINE) != 0
        assert "join token already used" in (host / "again.log").read_text()
        assert not state.exists()
