"""One pod of the local mesh, for real: a sidecar agent with Envoy, then the app, supervised."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
from meshkit import Mesh, poll

from lanes import lane_cidr
from pilotfish.runtime.network import ExplicitNetwork
from pilotfish.runtime.pod import PodRunner
from pilotfish.runtime.pod_command import PodEnv
from pilotfish.runtime.pod_spec import PodSpec, PortSpec, ProbeSpec
from pilotfish.runtime.process import group_alive

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

# The echo app, after it records what its sidecar's readiness endpoint answered
# at the moment the app was started (the runtime must hold it until then).
ECHO = (
    "import os, sys, urllib.request\n"
    "url = 'http://' + os.environ['POD_IP'] + ':15021/healthz/ready'\n"
    "try:\n"
    "    status = urllib.request.urlopen(url, timeout=5).status\n"
    "except Exception as exc:\n"
    "    status = repr(exc)\n"
    "print('sidecar at app start:', status, flush=True)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'pilotfish.samples.echo',"
    " '--service', 'echo', '--version', 'v1'])\n"
)


def _network() -> ExplicitNetwork:
    # A /24 of its own per lane, so parallel lanes do not share addresses.
    return ExplicitNetwork(lane_cidr("127.78.1.0/24"))


def _env(mesh: Mesh, address_pod: str, network: ExplicitNetwork) -> PodEnv:
    assert mesh.cp is not None
    return PodEnv(
        address=network.create_pod(address_pod, None),
        mode="explicit",
        xds_address=f"127.0.0.1:{mesh.cp.xds_port}",
        log_dir=mesh.root / "logs",
        work_dir=mesh.root / "work",
        agent_args=("--concurrency", "1", "--drain-duration", "1"),
        sidecar_start_timeout=60,
    )


def _envoy_pid(work_dir: Path) -> int:
    return int((work_dir / "envoy.pid").read_text().strip())


async def test_pod_lifecycle(mesh: Mesh, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pilotfish.runtime.pod")
    network = _network()
    env = _env(mesh, "echo-0", network)
    ip = env.address.ip
    mesh.write("echo.yaml", CONFIG.format(ip=ip))
    spec = PodSpec(
        name="echo-0",
        workload="echo",
        namespace="default",
        command=(sys.executable, "-c", ECHO),
        labels=(("app", "echo"),),
        ports=(PortSpec("http", 8080),),
        readiness=ProbeSpec("http", 8080, "/healthz", period_seconds=0.2, failure_threshold=1),
    )
    events: list[tuple[str, bool]] = []
    runner = PodRunner(spec, env, lambda pod, ready: events.append((pod, ready)))
    try:
        await runner.start()
        app_log = env.app_log("echo-0")

        async def app_saw_ready_sidecar() -> bool:
            return "sidecar at app start:" in (app_log.read_text() if app_log.exists() else "")

        await poll(app_saw_ready_sidecar, "the app's first line")
        assert "sidecar at app start: 200" in app_log.read_text()

        async def ready() -> bool:
            return runner.status().ready

        await poll(ready, "pod ready")
        assert events == [("echo-0", True)]
        status = runner.status()
        assert status.phase == "Running" and status.sidecar_ready and status.restarts == 0
        assert status.app_pid is not None and status.sidecar_pid is not None
        first_app = status.app_pid

        # The app is reached through its sidecar's inbound listener on the pod IP.
        assert mesh.session is not None

        async def answered() -> dict[str, object] | None:
            assert mesh.session is not None
            async with mesh.session.get(f"http://{ip}:8080/hello") as resp:
                if resp.status != 200:
                    return None
                body: dict[str, object] = await resp.json()
                return body

        body = await poll(answered, "echo through its sidecar")
        assert body["service"] == "echo" and body["hostname"] == "echo-0"
        assert body["port"] == runner.app_ports[8080] != 8080

        # kill -9 of the app: restarted once, ready again.
        os.killpg(first_app, signal.SIGKILL)

        async def restarted() -> bool:
            s = runner.status()
            return s.restarts == 1 and s.ready and s.app_pid not in (None, first_app)

        await poll(restarted, "app restarted and ready")
        assert runner.status().last_exit_code == -signal.SIGKILL
        assert events == [("echo-0", True), ("echo-0", False), ("echo-0", True)]
        assert (await poll(answered, "echo after the restart"))["service"] == "echo"

        # kill -9 of the sidecar agent (its Envoy dies with it): a new agent, ready again.
        old_sidecar = runner.status().sidecar_pid
        assert old_sidecar is not None
        os.killpg(old_sidecar, signal.SIGKILL)

        async def sidecar_back() -> bool:
            s = runner.status()
            return s.ready and s.sidecar_pid not in (None, old_sidecar)

        await poll(sidecar_back, "sidecar restarted and pod ready")
        assert events[-2:] == [("echo-0", False), ("echo-0", True)]
        assert runner.status().restarts == 1  # the app kept running
        await poll(answered, "echo through the new sidecar")

        # stop(): un-ready, the app, then the sidecar; nothing left behind.
        status = runner.status()
        envoy = _envoy_pid(env.proxy_dir("echo-0"))
        assert status.app_pid is not None and status.sidecar_pid is not None
        caplog.clear()
        await runner.stop(grace=10)
        messages = [r.getMessage() for r in caplog.records]
        # The echo app exits 0 on SIGTERM.
        app_stopped = messages.index("pod echo-0: app stopped (exit code 0)")
        sidecar_stopped = next(i for i, m in enumerate(messages) if "sidecar stopped" in m)
        assert messages.index("pod echo-0: not ready") < app_stopped < sidecar_stopped
        assert "sidecar stopped (exit code 0)" in messages[sidecar_stopped]  # drained, not killed
        assert events[-1] == ("echo-0", False)
        for pid in (status.app_pid, status.sidecar_pid, envoy):
            assert not group_alive(pid), pid
        assert not runner.pids_path.exists()
        await runner.stop()  # idempotent
        assert runner.status().app_pid is None and runner.status().sidecar_pid is None
    finally:
        await runner.stop(grace=2)


@pytest.mark.parametrize(("code", "phase"), [(0, "Succeeded"), (3, "Failed")])
async def test_never_restarted_pod_completes(mesh: Mesh, code: int, phase: str) -> None:
    network = _network()
    env = _env(mesh, f"job-{code}", network)
    spec = PodSpec(
        name=f"job-{code}",
        workload="job",
        namespace="default",
        command=(sys.executable, "-c", f"print('done'); raise SystemExit({code})"),
        restart_policy="Never",
    )
    events: list[tuple[str, bool]] = []
    runner = PodRunner(spec, env, lambda pod, ready: events.append((pod, ready)))
    try:
        await runner.start()
        sidecar = runner.status().sidecar_pid
        assert sidecar is not None
        assert await asyncio.wait_for(runner.wait_completed(), 60) == phase
        status = runner.status()
        assert status.phase == phase and status.last_exit_code == code
        assert not status.ready and not status.sidecar_ready and status.restarts == 0
        assert status.sidecar_pid is None and not group_alive(sidecar)
        assert not events or events[-1] == (spec.name, False)
        assert "done" in env.app_log(spec.name).read_text()
        assert not runner.pids_path.exists()
    finally:
        await runner.stop(grace=2)
