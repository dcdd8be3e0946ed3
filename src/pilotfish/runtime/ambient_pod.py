"""The one process of an ambient pod besides its app: readiness, no proxy.

An ambient pod has no sidecar: its traffic is carried by the host's node proxy,
which opens listeners inside the pod's network namespace. This small process
runs in that namespace (as the proxy user, in its sandbox) and serves what the
runtime asks a sidecar's agent for, on the same port (15021):

- ``/healthz/ready``: 200 once the node proxy's three listeners for this pod
  (outbound 15001, inbound 15006, HBONE 15008) accept connections here, so the
  app is started only when its traffic is already carried (Istio's
  ``holdApplicationUntilProxyStarts``). A listener with TLS is only opened
  once the node proxy holds the pod's certificate, so this also means the
  pod's identity is served; else 503 with the reason;
- ``/app-health/<port>/ready[?timeout=S]``: the app's readiness check (HTTP
  ``GET``, 2xx/3xx is healthy, or a TCP connect), run from inside the pod
  against 127.0.0.1 (which capture leaves alone), as the agent's
  ``agent.health.AppHealthChecker`` does: 200 or 503 with the reason, 404 for
  a port without a probe, 400 for a port or timeout that is not a number.

A pod out of the mesh (sidecar injection disabled by its labels) runs the same
process with ``--without-node-proxy``: no listeners to wait for, only the app's
readiness check, which is the part of a kubelet the runtime plays.

Theory of operation. One thread, one blocking loop: accept a connection, read
one request head (bounded in size and in time, so a client that sends nothing
holds the loop for ``_REQUEST_TIMEOUT`` at most), answer it with
``Connection: close`` and close. A check runs inside that loop: the listener
check is three loopback connects of ``_CONNECT_TIMEOUT`` each, an app check is
bounded by its ``timeout``. The runtime asks about once a second, one request
at a time, so nothing here needs concurrency. SIGTERM and SIGINT raise
``_Stop`` out of whatever is running (a blocking ``accept`` included); the
loop's sockets are closed and the process exits 0.

Why it is written against ``_socket`` and ``_signal`` (memory): six of these
run for Bookinfo's six pods, and in ambient mode they are most of what the
data plane costs besides the node proxy. Each private page counts six times.
The runtime starts it as ``python -I -S -c "...; from
pilotfish.runtime.ambient_pod import main; ..."`` (``pod_command.ambient_pod_argv``):
no ``site``, no ``runpy`` (``-m`` costs about 1 MiB of private memory), nothing
from the environment. It imports only ``sys`` and ``time`` (loaded at start-up
anyway), ``_signal`` (built in), ``_socket`` (a small shared library) and the two
package ``__init__`` modules (a docstring each, and ``__future__``): the wrappers
``socket.py`` and ``signal.py`` import ``enum`` and ``selectors``, about 1.2 MiB
more per process, and ``asyncio``, ``http.server``, ``argparse``, ``logging`` or
``dataclasses`` more again. So the probe syntax is parsed here too
(``parse_app_probe``, the same grammar as ``agent.config.parse_app_probe``, which
a unit test holds equal): importing ``agent.config`` would import the package's
models. A unit test asserts the import set stays this small. Measured in a
running ambient Bookinfo (six of them): 3.0 MiB PSS each, 2.7 MiB of it
private, when this module's ``__pycache__`` entry exists; 4.3 MiB PSS (3.9
private) when every start compiles it (the proxy user cannot write one into a
root-owned source tree); about 38 MiB when it was an asyncio/aiohttp server.

``python -I -S -c "from pilotfish.runtime.ambient_pod import main; main()"
--name reviews-0 --app-probe http:9080:/health`` (with the package on the path).
"""

import _signal  # type: ignore[import-not-found]  # no stub; see the module docstring
import _socket
import sys
import time

__all__ = [
    "NODE_PROXY_PORTS",
    "AppProbe",
    "UsageError",
    "check_app",
    "listeners_ready",
    "main",
    "parse_app_probe",
]

NODE_PROXY_PORTS = (15001, 15006, 15008)
_CONNECT_TIMEOUT = 0.5
# A request head must arrive within this long and fit in _MAX_HEAD bytes.
_REQUEST_TIMEOUT = 1.0
_MAX_HEAD = 8192
# Bounds of the per-request ``?timeout=`` of app checks, in seconds (as the agent's).
_APP_TIMEOUT_DEFAULT = 1.0
_APP_TIMEOUT_MIN = 0.05
_APP_TIMEOUT_MAX = 60.0
_MAX_STATUS_LINE = 4096

# (kind, port, path): ``("http", 9080, "/health")`` or ``("tcp", 9080, "/")`` (path unused).
AppProbe = tuple[str, int, str]
# (ready, reason)
Readiness = tuple[bool, str]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
_REASONS[503] = "Service Unavailable"

_USAGE = (
    "usage: ambient_pod.py [--name NAME] [--health-bind ADDRESS] [--health-port PORT]\n"
    "                      [--app-address ADDRESS] [--app-probe http:PORT:PATH|tcp:PORT]...\n"
    "                      [--without-node-proxy]\n"
)


class UsageError(ValueError):
    """A command-line argument is malformed; the message is meant for the user."""


class _Stop(Exception):
    """Raised by the SIGTERM/SIGINT handler, out of whatever the loop is doing."""


def parse_app_probe(text: str) -> AppProbe:
    """Parse ``http:<port>:<path>`` (path optional, default ``/``) or ``tcp:<port>``."""
    kind, _, rest = text.strip().partition(":")
    port_text, sep, path = rest.partition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if kind == "http" and 0 < port < 65536:
        path = path if sep else "/"
        return ("http", port, path if path.startswith("/") else "/" + path)
    if kind == "tcp" and 0 < port < 65536 and not sep:
        return ("tcp", port, "/")
    raise UsageError(f"app probe must look like http:PORT:PATH or tcp:PORT, got {text!r}")


def _family(host: str) -> int:
    return _socket.AF_INET6 if ":" in host else _socket.AF_INET


def _connect(host: str, port: int, timeout: float) -> _socket.socket:
    sock = _socket.socket(_family(host), _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listeners_ready(
    ports: tuple[int, ...] = NODE_PROXY_PORTS, host: str = "127.0.0.1"
) -> Readiness:
    """Ready while every one of ``ports`` accepts a connection on ``host``."""
    missing = []
    for port in ports:
        try:
            _connect(host, port, _CONNECT_TIMEOUT).close()
        except OSError:  # refused, or no answer in time (TimeoutError is one)
            missing.append(str(port))
    if missing:
        return (False, f"node proxy not listening here yet on {', '.join(missing)}")
    return (True, "ready")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _http_status(sock: _socket.socket, deadline: float) -> int | None:
    """The status code of the response's status line; None if it is not HTTP."""
    data = b""
    while b"\r\n" not in data and len(data) < _MAX_STATUS_LINE:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(_MAX_STATUS_LINE)
        if not chunk:
            break
        data += chunk
    parts = data.partition(b"\r\n")[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    code = parts[1]
    return int(code) if len(code) == 3 and code.isdigit() else None


def _http_check(address: str, port: int, path: str, deadline: float) -> Readiness:
    sock = _connect(address, port, _remaining(deadline))
    try:
        host = f"[{address}]" if ":" in address else address
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "User-Agent: pilotfish-probe/1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        sock.settimeout(_remaining(deadline))
        sock.sendall(request.encode("latin-1", "replace"))
        status = _http_status(sock, deadline)
    finally:
        sock.close()
    if status is None:
        return (False, "app answered something that is not HTTP")
    # As kubelet: any 2xx or 3xx status is a success; the body is ignored.
    return (200 <= status < 400, f"app answered {status}")


def check_app(probe: AppProbe, address: str = "127.0.0.1", timeout: float = 1.0) -> Readiness:
    """Run ``probe`` against ``address`` once, all of it within ``timeout`` seconds."""
    kind, port, path = probe
    deadline = time.monotonic() + timeout
    try:
        if kind == "tcp":
            _connect(address, port, timeout).close()
            return (True, "ready")
        return _http_check(address, port, path, deadline)
    except TimeoutError:
        return (False, f"no answer within {timeout:g}s")
    except OSError as exc:
        return (False, f"{type(exc).__name__}: {exc}")


class _Config:
    __slots__ = ("app_address", "bind", "name", "node_proxy", "port", "probes")

    def __init__(self) -> None:
        self.name = ""
        self.bind = "0.0.0.0"
        self.port = 15021
        self.app_address = "127.0.0.1"
        self.probes: dict[int, AppProbe] = {}
        self.node_proxy = True


def parse_args(argv: list[str]) -> _Config:
    """The command line (``--flag value`` or ``--flag=value``); ``UsageError`` if malformed."""
    config = _Config()
    args = list(argv)
    while args:
        flag, eq, value = args.pop(0).partition("=")
        if flag == "--without-node-proxy" and not eq:
            config.node_proxy = False
            continue
        if flag not in ("--name", "--health-bind", "--health-port", "--app-address", "--app-probe"):
            raise UsageError(f"unrecognized argument {flag!r}")
        if not eq:
            if not args:
                raise UsageError(f"{flag} needs a value")
            value = args.pop(0)
        if flag == "--name":
            config.name = value
        elif flag == "--health-bind":
            config.bind = value
        elif flag == "--health-port":
            if not value.isdigit() or int(value) > 65535:
                raise UsageError(f"--health-port must be a port number, got {value!r}")
            config.port = int(value)
        elif flag == "--app-address":
            config.app_address = value
        else:
            probe = parse_app_probe(value)
            config.probes[probe[1]] = probe
    return config


def _app_health(config: _Config, port_text: str, query: str) -> tuple[int, str]:
    timeout_text = str(_APP_TIMEOUT_DEFAULT)
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == "timeout":
            timeout_text = value
    try:
        port = int(port_text)
        timeout = float(timeout_text)
    except ValueError:
        return 400, "port and timeout must be numbers"
    if timeout != timeout:  # NaN
        return 400, "port and timeout must be numbers"
    probe = config.probes.get(port)
    if probe is None:
        return 404, f"no app probe for port {port}"
    timeout = min(max(timeout, _APP_TIMEOUT_MIN), _APP_TIMEOUT_MAX)
    ready, reason = check_app(probe, config.app_address, timeout)
    return (200 if ready else 503), reason


def _answer(config: _Config, method: str, target: str) -> tuple[int, str]:
    """(status, body) for one request."""
    path, _, query = target.partition("?")
    parts = path.split("/")
    if path == "/healthz/ready":
        route = "ready"
    elif len(parts) == 4 and parts[1] == "app-health" and parts[2] and parts[3] == "ready":
        route = "app"
    else:
        return 404, "not found"
    if method not in ("GET", "HEAD"):
        return 405, "only GET"
    if route == "app":
        return _app_health(config, parts[2], query)
    ports = NODE_PROXY_PORTS if config.node_proxy else ()
    ready, reason = listeners_ready(ports)
    return (200 if ready else 503), reason


def _read_head(conn: _socket.socket) -> bytes | None:
    """The request head (through its empty line); None if it is too long or too slow."""
    deadline = time.monotonic() + _REQUEST_TIMEOUT
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > _MAX_HEAD:
            return None
        conn.settimeout(_remaining(deadline))
        chunk = conn.recv(4096)
        if not chunk:
            return data or None
        data += chunk
    return data


def _handle(config: _Config, conn: _socket.socket) -> None:
    try:
        head = _read_head(conn)
    except TimeoutError:
        head = None
    if head is None:
        status, body, method = 400, "incomplete request", "GET"
    else:
        words = head.split(b"\n", 1)[0].decode("latin-1").split()
        if len(words) == 3 and words[2].startswith("HTTP/1.") and words[1].startswith("/"):
            method = words[0]
            status, body = _answer(config, method, words[1])
        else:
            status, body, method = 400, "bad request line", "GET"
    payload = (body + "\n").encode("utf-8", "replace")
    response = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    conn.settimeout(_REQUEST_TIMEOUT)
    conn.sendall(response if method == "HEAD" else response + payload)


def _listen(host: str, port: int) -> _socket.socket:
    sock = _socket.socket(_family(host), _socket.SOCK_STREAM)
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock


def _serve(config: _Config, listener: _socket.socket) -> None:
    family = listener.family
    while True:
        fd, _ = listener._accept()  # type: ignore[attr-defined]  # absent from the stub
        conn = _socket.socket(family, _socket.SOCK_STREAM, 0, fd)
        try:
            _handle(config, conn)
        except OSError:
            pass  # the client went away or stalled: its answer is dropped, the loop goes on
        finally:
            conn.close()


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} INFO pilotfish.ambient_pod: {message}\n")
    sys.stderr.flush()


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        sys.stdout.write(_USAGE)
        return 0
    try:
        config = parse_args(args)
    except UsageError as exc:
        sys.stderr.write(f"{_USAGE}ambient_pod.py: error: {exc}\n")
        return 2
    for signum in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(signum, _stop)
    try:
        listener = _listen(config.bind, config.port)
    except OSError as exc:
        sys.stderr.write(f"ambient_pod.py: cannot listen on {config.bind}:{config.port}: {exc}\n")
        return 1
    except _Stop:
        return 0
    try:
        bound = listener.getsockname()[1]
        _log(f"ambient pod {config.name}: health on {config.bind}:{bound}")
        _serve(config, listener)
    except _Stop:
        _log(f"ambient pod {config.name}: stopping")
    finally:
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
