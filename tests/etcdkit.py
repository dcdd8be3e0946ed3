"""A real etcd for tests, and a TCP relay that can cut the line to it.

``EtcdServer`` runs Debian's ``etcd`` with the runtime addon's command line
(``runtime.etcd_addon.etcd_argv``) on loopback ports from this lane's range
and a data directory of the test's; ``stop()``/``start()`` restart it on the
same ports and data (a restart keeps every key). The ``etcd_server``
fixture removes it also when the test fails.

``Relay`` forwards a local port to etcd. ``cut()`` closes every connection
through it and refuses new ones until ``restore()``: a client behind it loses
etcd exactly as it would on a broken network, while the test still reaches
etcd directly. It stands in for the network, not for etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pilotfish.runtime.etcd_addon import etcd_argv
from pilotfish.runtime.ports import free_port
from polling import poll

__all__ = ["EtcdServer", "Relay", "ServerTls", "etcd_missing", "etcd_server"]

T = TypeVar("T")


def etcd_missing() -> str | None:
    """Why etcd tests cannot run here, or None."""
    if shutil.which("etcd") is None:
        return "etcd is not installed (make setup installs etcd-server as root)"
    return None


def all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is in the stopped state (``T`` in /proc).

    ``kill(SIGSTOP)`` returns once one thread is chosen to start the group stop; the
    others keep running (and may answer a request) until that thread has run, which
    on a loaded machine takes a while. Tests of a hung etcd wait for this first.
    """
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        states.append(stat[stat.rindex(")") + 2])
    return bool(states) and all(state in "Tt" for state in states)


@pytest.fixture
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A real etcd on this lane's loopback ports, stopped (data removed) also on failure.

    Import it into a test module (or conftest) to use it.
    """
    missing = etcd_missing()
    if missing:
        pytest.skip(missing)
    server = EtcdServer(tmp_path / "etcd-data", tmp_path / "etcd.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@dataclass(frozen=True)
class ServerTls:
    """etcd serving HTTPS with ``cert``/``key`` and requiring client certificates
    signed by ``client_ca`` (paths)."""

    cert: Path
    key: Path
    client_ca: Path


class EtcdServer:
    def __init__(self, data_dir: Path, log_path: Path, tls: ServerTls | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.tls = tls
        self.port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"etcd://{self.address}"

    def start(self) -> None:
        argv = etcd_argv(self.data_dir, self.port, self.peer_port, name="test")
        if self.tls is not None:
            client = f"://{self.address}"
            argv = (
                *(a.replace(f"http{client}", f"https{client}") for a in argv),
                f"--cert-file={self.tls.cert}",
                f"--key-file={self.tls.key}",
                f"--trusted-ca-file={self.tls.client_ca}",
                "--client-cert-auth",
            )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        poll(self.healthy, "etcd to answer /health", deadline=20.0, context=self.log_tail)

    def healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "etcd exited"
        if self.tls is not None:
            # Without a client certificate etcd refuses the handshake: listening is enough.
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        with urllib.request.urlopen(f"http://{self.address}/health", timeout=1) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def call(self, path: str, body: dict[str, object]) -> dict[str, object]:
        """One JSON-gateway call, straight to etcd (as another tool would make it)."""
        request = urllib.request.Request(
            f"http://{self.address}{path}",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            doc: dict[str, object] = json.loads(resp.read())
            return doc

    def log_tail(self) -> str:
        try:
            return "etcd log:\n" + self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""


class Relay:
    """Forwards ``127.0.0.1:<port>`` to ``target``; see the module docstring.

    It runs its own event loop in a thread: the store's writes block the test's
    loop, and the line must keep carrying them meanwhile.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._cut = False

    def start(self) -> None:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open.difference_update((writer, up_writer))

    async def _cut_all(self) -> None:
        self._cut = True
        for writer in list(self._open):
            writer.transport.abort()  # a reset, as when the network breaks
        self._open.clear()

    def cut(self) -> None:
        self._run(self._cut_all())

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_cut", False)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.cut()
        if self._server is not None:
            self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
