"""What every data-plane arrangement shares: parameters, targets, processes, waiting.

Processes started here lead their own session, log to a file and are stopped
with SIGTERM then SIGKILL to their process group (``Process.stop``), registered
on an ExitStack by ``start_process`` so they stop whatever happens. Every wait
polls with a deadline (``wait_for``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.controlplane_scale import BenchmarkError
from pilotfish.runtime.ports import free_port

__all__ = [
    "SERVICE_HOST",
    "SERVICE_PORT",
    "Arrangement",
    "ArrangementSkipped",
    "DataplaneParams",
    "Process",
    "Rig",
    "Target",
    "answers_200",
    "envoy_pid",
    "free_port",
    "has_envoy",
    "http_get",
    "start_process",
    "wait_for",
]

SERVICE_HOST = "echo:9080"
SERVICE_PORT = 9080


@dataclass(frozen=True, slots=True)
class DataplaneParams:
    """Load shape and bounds of one run. ``rate`` is the total over all connections."""

    rate: int
    connections: int
    response_bytes: int
    duration_s: float
    warmup_s: float
    envoy_concurrency: int = 2
    load_generator: str = "auto"  # "auto" (hey, else python), "hey" or "python"
    ready_deadline_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Rig:
    """What every arrangement shares: the app under test, the tools, a scratch directory."""

    exe: Path
    work: Path
    params: DataplaneParams
    app_port: int
    log: Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where an arrangement's load goes, and the proxies on the way as (role, Envoy pid).

    ``exec_prefix`` runs the probe and the load generator elsewhere (``ip netns exec
    <netns>``); ``app_pid`` is the app answering when it is not the shared one.
    """

    url: str
    headers: tuple[tuple[str, str], ...]
    proxies: tuple[tuple[str, int], ...] = ()
    exec_prefix: tuple[str, ...] = ()
    app_pid: int | None = None


class ArrangementSkipped(Exception):
    """An arrangement cannot run on this machine (not root, no hey); the message says why."""


Arrangement = Callable[[Rig, contextlib.ExitStack], Target]


class Process:
    """A subprocess in its own session (so its children can be stopped too), logging to a file."""

    def __init__(self, name: str, command: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise BenchmarkError(f"cannot start {name}: {exc}") from exc

    def check_alive(self) -> None:
        """Raise if the process has exited (reaping it: its log tail says why)."""
        if self.proc.poll() is not None:
            raise BenchmarkError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (agents drain and stop their Envoy), then SIGKILL to the process group.

        The leader is left unreaped until the group is killed, so its pid, which is
        the group id, cannot have been reused by then.
        """
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            self._exited_unreaped(timeout_s=10)
        # Reaches an Envoy left behind by an agent that did not stop it, nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._log.close()

    def _exited_unreaped(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                flags = os.WEXITED | os.WNOWAIT | os.WNOHANG
                if os.waitid(os.P_PID, self.proc.pid, flags) is not None:
                    return True
            except ChildProcessError:  # already reaped
                return True
            time.sleep(0.02)
        return False


def start_process(
    stack: contextlib.ExitStack, name: str, command: list[str], work: Path
) -> Process:
    process = Process(name, command, work / f"{name}.log")
    stack.callback(process.stop)
    return process


def http_get(
    url: str, headers: tuple[tuple[str, str], ...] = (), timeout: float = 2.0
) -> tuple[int, bytes]:
    """GET without any proxy from the environment; HTTP errors are answers, not exceptions."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def answers_200(url: str) -> Callable[[], bool]:
    return lambda: http_get(url)[0] == 200


def wait_for(
    what: str, check: Callable[[], bool], deadline_s: float, processes: tuple[Process, ...] = ()
) -> float:
    """Poll ``check`` until true; return seconds waited. Raises on timeout or a dead process."""
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < deadline_s:
        for process in processes:
            process.check_alive()
        try:
            if check():
                return time.monotonic() - started
        except (OSError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.05)
    raise BenchmarkError(f"timed out after {deadline_s:.0f} s waiting for {what} ({last})")


def envoy_pid(work_dir: Path) -> int | None:
    """The pid in ``<work_dir>/envoy.pid`` if that process is alive and is Envoy."""
    try:
        pid = int((work_dir / "envoy.pid").read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if "envoy" in comm else None


def has_envoy(work_dir: Path) -> bool:
    return envoy_pid(work_dir) is not None
