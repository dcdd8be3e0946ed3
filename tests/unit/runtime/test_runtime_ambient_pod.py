"""An ambient pod's readiness process, over real sockets on loopback.

The checks are called directly (node proxy listeners, app probes against a real
tiny HTTP app) and the process itself is run as the runtime runs it
(``python -I -S -c AMBIENT_POD_MAIN``), asked over HTTP and stopped by signal.
The node proxy's fixed ports are swapped for free ones in the running process,
so a test never depends on what else listens on this host's 15001/15006/15008.
"""

from __future__ import annotations

import http.client
import http.server
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from pilotfish.agent.config import ConfigError
from pilotfish.agent.config import parse_app_probe as agent_parse_app_probe
from pilotfish.runtime.ambient_pod import (
    UsageError,
    check_app,
    listeners_ready,
    parse_app_probe,
)
from pilotfish.runtime.pod_command import AMBIENT_POD_MAIN

# -B: tests write no __pycache__ into the source tree.
_LAUNCH = [sys.executable, "-I", "-S", "-B", "-c"]
_START_TIMEOUT = 20.0


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


def _closed_port() -> int:
    """A port nothing listens on (bound, then closed: refused from now on)."""
    sock = _listener()
    port: int = sock.getsockname()[1]
    sock.close()
    return port


def _port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


class _App(http.server.BaseHTTPRequestHandler):
    """``/status/<code>`` answers that code; ``/hang`` waits until the test ends."""

    hang = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/hang":
            self.hang.wait(30)
            return
        code = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        _App.hang.set()
        server.shutdown()
        server.server_close()
        _App.hang.clear()


# -- the checks, called directly -------------------------------------------------------


def test_ready_only_while_every_listener_accepts() -> None:
    a, b = _listener(), _listener()
    pa, pb = _port(a), _port(b)
    try:
        assert listeners_ready((pa, pb)) == (True, "ready")
        b.close()
        ready, reason = listeners_ready((pa, pb))
        assert not ready and str(pb) in reason and str(pa) not in reason
    finally:
        a.close()
        b.close()


def test_without_node_proxy_ports_it_is_ready_at_once() -> None:
    # A pod out of the mesh: nothing to wait for but its app's own probe.
    assert listeners_ready(()) == (True, "ready")


@pytest.mark.parametrize(
    "text",
    [
        "http:9080:/health",
        "http:9080",
        "http:9080:",
        "http:9080:health/x?y=1",
        " tcp:5432 ",
        "tcp:5432:/x",
        "tcp:0",
        "http:65536:/",
        "udp:53",
        "http:x:/",
        "",
    ],
)
def test_probe_syntax_is_the_agents(text: str) -> None:
    # The grammar is written twice (memory, see the module): the two must agree.
    try:
        expected = agent_parse_app_probe(text)
    except ConfigError as exc:
        with pytest.raises(UsageError) as got:
            parse_app_probe(text)
        assert str(got.value) == str(exc)
        return
    assert parse_app_probe(text) == (expected.kind, expected.port, expected.path)


@pytest.mark.parametrize(("code", "ready"), [(200, True), (302, True), (404, False), (500, False)])
def test_http_probe_passes_on_2xx_and_3xx_as_kubelet(app: int, code: int, ready: bool) -> None:
    assert check_app(("http", app, f"/status/{code}")) == (ready, f"app answered {code}")


def test_tcp_probe_passes_while_the_app_accepts() -> None:
    sock = _listener()
    port = _port(sock)
    try:
        assert check_app(("tcp", port, "/")) == (True, "ready")
    finally:
        sock.close()
    ready, reason = check_app(("tcp", port, "/"))
    assert not ready and reason.startswith("ConnectionRefusedError")


def test_a_probe_of_a_closed_port_fails_with_the_reason() -> None:
    ready, reason = check_app(("http", _closed_port(), "/"))
    assert not ready and reason.startswith("ConnectionRefusedError")


def test_a_hanging_app_is_bounded_by_the_probe_timeout(app: int) -> None:
    start = time.monotonic()
    assert check_app(("http", app, "/hang"), timeout=0.3) == (False, "no answer within 0.3s")
    assert time.monotonic() - start < 2.0


def test_an_answer_that_is_not_http_fails() -> None:
    sock = _listener()

    def answer() -> None:
        conn, _ = sock.accept()
        conn.recv(4096)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        assert check_app(("http", _port(sock), "/"), timeout=5) == (
            False,
            "app answered something that is not HTTP",
        )
    finally:
        thread.join(5)
        sock.close()


# -- the process, as the runtime runs it -----------------------------------------------


class _Pod:
    """The readiness process on a free port of 127.0.0.1 (``ports``: its node proxy's)."""

    def __init__(self, args: list[str], ports: tuple[int, ...] | None = None) -> None:
        program = AMBIENT_POD_MAIN
        if ports is not None:
            program = program.replace(
                "from pilotfish.runtime.ambient_pod import main",
                f"import pilotfish.runtime.ambient_pod as m; m.NODE_PROXY_PORTS = {ports!r}; "
                "from pilotfish.runtime.ambient_pod import main",
            )
            assert program != AMBIENT_POD_MAIN
        flags = ["--name", "reviews-0", "--health-bind", "127.0.0.1", "--health-port", "0"]
        self.proc = subprocess.Popen(
            [*_LAUNCH, program, *flags, *args], stderr=subprocess.PIPE, text=True
        )
        self.port = self._bound_port()

    def _bound_port(self) -> int:
        """From its first log line, written once it listens."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stderr], [], [], 0.5)
            if readable:
                line = self.proc.stderr.readline()
                assert line, f"exited with {self.proc.wait(5)} before listening"
                if "health on 127.0.0.1:" in line:
                    return int(line.rsplit(":", 1)[1])
        raise AssertionError("readiness process did not listen in time")

    def get(self, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.stderr is not None:
                self.proc.stderr.close()


@pytest.fixture
def pods() -> Iterator[list[_Pod]]:
    started: list[_Pod] = []
    yield started
    for pod in started:
        if pod.proc.poll() is None:
            pod.proc.kill()
        pod.stop()


def test_process_is_ready_once_the_node_proxy_listens(pods: list[_Pod]) -> None:
    socks = [_listener() for _ in range(3)]
    ports = tuple(_port(s) for s in socks)
    try:
        pod = _Pod([], ports)
        pods.append(pod)
        assert pod.get("/healthz/ready") == (200, "ready\n")
        assert pod.get("/healthz/ready", "HEAD") == (200, "")
        socks[2].close()
        status, body = pod.get("/healthz/ready")
        assert status == 503 and f"not listening here yet on {ports[2]}" in body
    finally:
        for sock in socks:
            sock.close()


def test_process_out_of_the_mesh_waits_for_no_listener(pods: list[_Pod]) -> None:
    # The real node proxy ports, which nothing listens on in that pod: not asked.
    pod = _Pod(["--without-node-proxy"])
    pods.append(pod)
    assert pod.get("/healthz/ready") == (200, "ready\n")


def test_process_runs_the_apps_probes(app: int, pods: list[_Pod]) -> None:
    closed = _closed_port()
    probes = ["--app-probe", f"http:{app}:/status/204", "--app-probe", f"tcp:{closed}"]
    pod = _Pod(["--without-node-proxy", *probes, "--app-address", "127.0.0.1"])
    pods.append(pod)
    assert pod.get(f"/app-health/{app}/ready") == (200, "app answered 204\n")
    status, body = pod.get(f"/app-health/{closed}/ready?timeout=2")
    assert status == 503 and body.startswith("ConnectionRefusedError")
    assert pod.get(f"/app-health/{closed + 1}/ready")[0] == 404
    assert pod.get("/app-health/http/ready") == (400, "port and timeout must be numbers\n")
    assert pod.get(f"/app-health/{app}/ready?timeout=soon")[0] == 400
    assert pod.get("/healthz/ready", "POST")[0] == 405
    assert pod.get("/identity")[0] == 404


def test_a_hanging_app_is_answered_within_the_requested_timeout(app: int, pods: list[_Pod]) -> None:
    pod = _Pod(["--without-node-proxy", "--app-probe", f"http:{app}:/hang"])
    pods.append(pod)
    start = time.monotonic()
    assert pod.get(f"/app-health/{app}/ready?timeout=0.5") == (503, "no answer within 0.5s\n")
    assert time.monotonic() - start < 3.0
    # The lower bound of the agent's applies: a zero timeout is 0.05 s, not "no time".
    assert pod.get(f"/app-health/{app}/ready?timeout=0")[1] == "no answer within 0.05s\n"


def test_bad_and_stuck_clients_do_not_wedge_it(pods: list[_Pod]) -> None:
    pod = _Pod(["--without-node-proxy"])
    pods.append(pod)
    with socket.create_connection(("127.0.0.1", pod.port), timeout=5) as bad:
        bad.sendall(b"this is not http\r\n\r\n")
        assert bad.recv(4096).startswith(b"HTTP/1.1 400 ")
    # A client that connects and sends nothing holds the loop for a bounded time only.
    stuck = socket.create_connection(("127.0.0.1", pod.port), timeout=5)
    try:
        start = time.monotonic()
        assert pod.get("/healthz/ready", timeout=5) == (200, "ready\n")
        assert time.monotonic() - start < 3.0
        # The stuck client was answered 400 (its request never came) and closed.
        assert stuck.recv(4096).startswith(b"HTTP/1.1 400 ")
    finally:
        stuck.close()
    # One that sends a huge head is refused and the process goes on.
    with socket.create_connection(("127.0.0.1", pod.port), timeout=5) as big:
        big.sendall(b"GET /healthz/ready HTTP/1.1\r\nX: " + b"a" * 20000)
        assert big.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert pod.get("/healthz/ready") == (200, "ready\n")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_it_cleanly(pods: list[_Pod], signum: int) -> None:
    pod = _Pod(["--without-node-proxy"])
    pods.append(pod)
    assert pod.get("/healthz/ready")[0] == 200
    assert pod.stop(signum) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--app-probe", "udp:53"], "app probe must look like"),
        (["--health-porrt", "1"], "unrecognized argument '--health-porrt'"),
        (["--health-port", "http"], "--health-port must be a port number"),
        (["--name"], "--name needs a value"),
    ],
)
def test_a_malformed_command_line_is_a_usage_error(args: list[str], message: str) -> None:
    cmd = [*_LAUNCH, AMBIENT_POD_MAIN, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr


# -- what it imports (the memory it costs) ---------------------------------------------


def _modules(launch: list[str], program: str) -> set[str]:
    done = subprocess.run(
        [*launch, program + "; import sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return set(done.stdout.split())


_HEAVY = ("asyncio", "aiohttp", "pydantic", "yaml", "pilotfish.agent", "http", "argparse")
_HEAVY += ("logging", "dataclasses", "enum", "socket", "signal", "selectors", "typing")


def test_it_imports_no_heavy_module_even_with_site() -> None:
    modules = _modules([sys.executable, "-B", "-c"], "import pilotfish.runtime.ambient_pod")
    assert "pilotfish.runtime.ambient_pod" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in _HEAVY or m.startswith(_HEAVY))
    assert heavy == []


def test_as_launched_it_adds_only_its_own_modules_to_a_bare_interpreter() -> None:
    bare = _modules(_LAUNCH, "pass")
    program = AMBIENT_POD_MAIN.replace("; sys.exit(main())", "")
    assert program != AMBIENT_POD_MAIN
    added = _modules(_LAUNCH, program) - bare
    # __future__: the package's __init__ (a few hundred bytes); the rest is this module.
    own = {"pilotfish", "pilotfish.runtime", "pilotfish.runtime.ambient_pod", "__future__"}
    assert added == {*own, "_socket"}
