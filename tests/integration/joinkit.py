"""A real ``pilotfish control-plane`` with a CA, and ``pilotfish join`` processes against it.

The CA port is the xDS-over-mTLS port + 1, as ``pilotfish join`` expects.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotfish.runtime.ports import free_port
from polling import poll

PILOTFISH = [sys.executable, "-m", "pilotfish.cli.main"]
DEADLINE = 30.0
# The control plane's WorkloadEntry grace period here (Istio's default is 10 s).
GRACE = 2.0
GROUP_FILE = (
    Path(__file__).resolve().parents[1] / "testdata" / "api" / "bookinfo" / "workload-group.yaml"
)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PILOTFISH, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def port_pair() -> int:
    """A free port whose successor is free too (xDS over mTLS, then the CA)."""
    for _ in range(100):
        port = free_port()
        if port + 1 < 65536 and _bindable(port + 1):
            return port
    raise RuntimeError("no two free consecutive ports")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class ControlPlaneProc:
    work: Path
    url: str
    mtls_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str) -> Any:
        token = (self.work / ".pilotfish" / "api-token").read_text().strip()
        request = urllib.request.Request(self.url + path)
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.loads(resp.read())

    def entry(self, name: str, namespace: str = "default") -> Any:
        """The WorkloadEntry ``name`` from the API, or None."""
        path = f"/apis/networking.istio.io/v1/namespaces/{namespace}/workloadentries/{name}"
        try:
            return self.api(path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def create_token(self, out: Path, *args: str) -> dict[str, Any]:
        done = cli(
            self.work, "join-token", "create", "-o", str(out), "--control-plane", self.url, *args
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(out.read_text()))


@contextmanager
def control_plane(
    tmp_path: Path, *extra: str, bind: str = "127.0.0.1"
) -> Iterator[ControlPlaneProc]:
    work = tmp_path / "cp"
    (work / "config").mkdir(parents=True)
    (work / "config" / "group.yaml").write_text(GROUP_FILE.read_text())
    http, mtls = free_port(), port_pair()
    argv = [
        *PILOTFISH,
        "control-plane",
        "--config",
        "config",
        "--bind",
        bind,
        "--xds-port",
        str(free_port()),
        "--http-port",
        str(http),
        "--ca-dir",
        "ca",
        "--xds-mtls-port",
        str(mtls),
        "--secure-port",
        str(mtls + 1),
        *extra,
    ]
    log = tmp_path / "cp.log"
    env = {**os.environ, "PILOT_WORKLOAD_ENTRY_GRACE_PERIOD": f"{GRACE}s"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    cp = ControlPlaneProc(work, f"http://{bind}:{http}", mtls, proc, log)

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        return "pilotfish control plane:" in log.read_text()

    try:
        poll(ready, "the control plane to start", DEADLINE, interval=0.05)
        yield cp
    finally:
        proc.terminate()
        proc.wait(DEADLINE)


def start_join(
    cwd: Path, argv: list[str], log: Path, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """``pilotfish join`` with ``argv``, in a session of its own (its log in ``log``)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [*prefix, *PILOTFISH, "join", *argv],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def stop_join(proc: subprocess.Popen[bytes], timeout: float = DEADLINE) -> int:
    """SIGTERM, as a service manager stops it; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (an agent's or Envoy's work dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found
