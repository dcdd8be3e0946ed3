"""A pod whose supervisor died is adopted by a new runner and supervised as before.

A helper process plays the first supervisor: it starts the pod (real agent,
Envoy and echo app, explicit mode) and is killed with SIGKILL, so the pod's
processes are orphans, not children of this test, exactly as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from meshkit import Mesh, poll

from pilotfish.runtime.network import PodAddress
from pilotfish.runtime.pod import PodRunner
from pilotfish.runtime.pod_command import PodEnv
from pilotfish.runtime.pod_spec import PodSpec, PortSpec, ProbeSpec
from pilotfish.runtime.process import group_alive, read_pid_record
from pilotfish.runtime.supervised import AdoptedProcess
from polling import apoll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CONFIG = """\
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: echo-0, namespace: default}}
spec: {{address: {ip}, labels: {{app: echo}}}}
"""

# The first supervisor: starts the pod, reports its app ports once ready, then idles.
_SUPERVISOR = """\
import asyncio, json, sys
from pathlib import Path
from pilotfish.runtime.network import PodAddress
from pilotfish.runtime.pod import PodRunner
from pilotfish.runtime.pod_command import PodEnv
from pilotfish.runtime.pod_spec import PodSpec

args = json.loads(sys.argv[1])

async def main():
    env = PodEnv(
        address=PodAddress(pod=args["pod"], ip=args["ip"]), mode="explicit",
        xds_address=args["xds"], log_dir=Path(args["logs"]), work_dir=Path(args["work"]),
        agent_args=("--concurrency", "1", "--drain-duration", "1"),
    )
    runner = PodRunner(PodSpec.from_json(args["spec"]), env, lambda pod, ready: None)
    await runner.start()
    while not runner.status().ready:
        await asyncio.sleep(0.05)
    print(json.dumps({str(k): v for k, v in runner.app_ports.items()}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _spec() -> PodSpec:
    return PodSpec(
        name="echo-0",
        workload="echo",
        namespace="default",
        command=(
            sys.executable,
            "-m",
            "pilotfish.samples.echo",
            "--service",
            "echo",
            "--version",
            "v1",
        ),
        labels=(("app", "echo"),),
        ports=(PortSpec("http", 8080),),
        readiness=ProbeSpec("http", 8080, "/healthz", period_seconds=0.2, failure_threshold=1),
    )


def _env(mesh: Mesh, ip: str) -> PodEnv:
    assert mesh.cp is not None
    return PodEnv(
        address=PodAddress(pod="echo-0", ip=ip),
        mode="explicit",
        xds_address=f"127.0.0.1:{mesh.cp.xds_port}",
        log_dir=mesh.root / "logs",
        work_dir=mesh.root / "work",
        agent_args=("--concurrency", "1", "--drain-duration", "1"),
        sidecar_start_timeout=60,
    )


async def _crashed_supervisor(env: PodEnv) -> dict[int, int]:
    """Start the pod from a helper process, then SIGKILL the helper; the app ports."""
    args = {
        "pod": "echo-0",
        "ip": env.address.ip,
        "xds": env.xds_address,
        "logs": str(env.log_dir),
        "work": str(env.work_dir),
        "spec": _spec().to_json(),
    }
    # Our event loop serves the control plane: wait for the helper without blocking it.
    helper = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SUPERVISOR,
        json.dumps(args),
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert helper.stdout is not None
        line = await asyncio.wait_for(helper.stdout.readline(), 90)
        assert line, "the helper supervisor exited before its pod was ready"
        ports = {int(k): int(v) for k, v in json.loads(line).items()}
    finally:
        with contextlib.suppress(ProcessLookupError):
            helper.kill()
        await helper.wait()
    return ports


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


async def _answered(mesh: Mesh, ip: str) -> dict[str, Any] | None:
    assert mesh.session is not None
    async with mesh.session.get(f"http://{ip}:8080/hello") as resp:
        if resp.status != 200:
            return None
        body: dict[str, Any] = await resp.json()
        return body


async def test_adopted_pod_is_supervised_like_a_started_one(mesh: Mesh) -> None:
    ip = mesh.new_ip()
    mesh.write("echo.yaml", CONFIG.format(ip=ip))
    env = _env(mesh, ip)
    ports = await _crashed_supervisor(env)
    records = read_pid_record(env.pod_dir("echo-0") / "pids.json")
    assert set(records) == {"sidecar", "app"}
    for record in records.values():
        assert os.getpid() != record.pid and not _gone(record.pid)

    events: list[tuple[str, bool]] = []
    runner = PodRunner(_spec(), env, lambda pod, ready: events.append((pod, ready)))
    try:
        sidecar = AdoptedProcess.adopt(records["sidecar"])
        app = AdoptedProcess.adopt(records["app"])
        assert sidecar is not None and app is not None
        assert sidecar.watched_by_pidfd
        # Probed once before it returns: ready at once, as it was.
        assert await runner.adopt(sidecar, app, app_ports=ports, restarts=2) is True
        assert events == [("echo-0", True)]
        status = runner.status()
        assert (status.app_pid, status.sidecar_pid) == (records["app"].pid, sidecar.pid)
        assert status.restarts == 2 and status.phase == "Running"
        assert (await poll(lambda: _answered(mesh, ip), "echo"))["port"] == ports[8080]

        # The adopted app dies: its exit code is unknown, it is restarted on its port.
        os.killpg(records["app"].pgid, signal.SIGKILL)

        async def restarted() -> bool:
            s = runner.status()
            return s.restarts == 3 and s.ready and s.app_pid not in (None, records["app"].pid)

        await poll(restarted, "the adopted app to be restarted and ready")
        assert "unknown" in runner.status().message
        assert events == [("echo-0", True), ("echo-0", False), ("echo-0", True)]
        assert (await poll(lambda: _answered(mesh, ip), "echo after restart"))["port"] == ports[
            8080
        ]

        # stop() stops the adopted sidecar by its group, and the new app.
        new_app = runner.status().app_pid
        assert new_app is not None
        await runner.stop(grace=10)
        for pid in (new_app, records["sidecar"].pid):
            assert not group_alive(pid), pid
        # One SIGTERM: the agent drained (a second one would cut the drain short).
        sidecar_log = env.sidecar_log("echo-0").read_text()
        assert "received SIGTERM; draining" in sidecar_log
        assert "received SIGTERM again" not in sidecar_log
        assert not runner.pids_path.exists()
    finally:
        await runner.stop(grace=2)


async def test_adopted_pod_without_its_app_starts_one(mesh: Mesh) -> None:
    ip = mesh.new_ip()
    mesh.write("echo.yaml", CONFIG.format(ip=ip))
    env = _env(mesh, ip)
    ports = await _crashed_supervisor(env)
    records = read_pid_record(env.pod_dir("echo-0") / "pids.json")
    os.killpg(records["app"].pgid, signal.SIGKILL)
    await apoll(lambda: _gone(records["app"].pid), "the killed app to be gone", 10)
    assert AdoptedProcess.adopt(records["app"]) is None

    runner = PodRunner(_spec(), env, lambda pod, ready: None)
    try:
        sidecar = AdoptedProcess.adopt(records["sidecar"])
        assert sidecar is not None
        # Not ready yet: the new app starts in the background.
        assert await runner.adopt(sidecar, None, app_ports=ports) is False

        async def ready() -> bool:
            s = runner.status()
            return s.ready and s.restarts == 1 and s.app_pid not in (None, records["app"].pid)

        await poll(ready, "a new app behind the adopted sidecar")
        assert runner.status().sidecar_pid == records["sidecar"].pid
        await poll(lambda: _answered(mesh, ip), "echo from the new app")
    finally:
        await runner.stop(grace=2)
    assert not group_alive(records["sidecar"].pid)
