"""Free ports for listeners that something else binds later.

Theory of operation: the usual trick, bind port 0 and read the number back, takes
the port from the kernel's *ephemeral* range (``net.ipv4.ip_local_port_range``,
32768-60999 by default). That is the same range ``connect()`` draws source ports
from, so in a busy mesh (agents dialling the control plane, Envoys dialling each
other) an outgoing connection can take the port between the moment it is chosen
and the moment the gateway or app binds it, and the bind fails with "Address
already in use". Ports below the ephemeral range are never handed out by
``connect()``; only an explicit ``bind`` can take them. So ports are chosen at
random below that range and probed with a bind on the wildcard address, which
fails if any address of this network namespace holds the port. A process also
never hands out the same port twice, so ports chosen together stay distinct even
before anything binds them.

Two meshes on one host (or two test lanes) cannot see each other's chosen but not
yet bound ports, so each may be given a range of its own with the environment
variable ``PILOTFISH_PORT_RANGE=LOW-HIGH`` (inclusive; children inherit it, so a
mesh's supervisor draws from the same range as the ``pilotfish up`` that started
it). A malformed value is an error naming the variable, not a silent default.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["PORT_RANGE_ENV", "free_port", "port_in_use", "port_range", "reserve"]

PORT_RANGE_ENV = "PILOTFISH_PORT_RANGE"

# Below this, ports are privileged or conventional (and a test bind as root would
# succeed where users' services expect them).
_LOWEST = 10000
_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_lock = threading.Lock()
_handed_out: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_range() -> tuple[int, int]:
    """``[low, top)`` ports are drawn from: ``PILOTFISH_PORT_RANGE`` if set, else
    10000 up to the ephemeral range. Raises ``ValueError`` for a malformed setting."""
    spec = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not spec:
        return _LOWEST, _ephemeral_start()
    low_text, sep, high_text = spec.partition("-")
    if not (sep and low_text.strip().isdigit() and high_text.strip().isdigit()):
        raise ValueError(f"{PORT_RANGE_ENV}={spec!r}: expected LOW-HIGH, e.g. 20000-24999")
    low, high = int(low_text), int(high_text)
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"{PORT_RANGE_ENV}={spec!r}: need 1024 <= LOW <= HIGH <= 65535")
    return low, high + 1


def _bindable(port: int, host: str) -> bool:
    for address in {host, "0.0.0.0"}:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def reserve(ports: Iterable[int]) -> None:
    """Ports this process uses without ``free_port`` (e.g. control-plane replicas at
    fixed offsets): ``free_port`` never hands them out."""
    with _lock:
        _handed_out.update(ports)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something in this network namespace holds ``port``."""
    return not _bindable(port, host)


def _ephemeral_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing in this network namespace holds, outside the ephemeral range
    when the kernel leaves room below it (else the kernel's choice, as before), or
    from ``PILOTFISH_PORT_RANGE`` when that is set."""
    low, top = port_range()
    configured = bool(os.environ.get(PORT_RANGE_ENV, "").strip())
    with _lock:
        if configured or top - low >= 1000:
            for _ in range(200):
                port = random.randrange(low, top)
                if port not in _handed_out and _bindable(port, host):
                    _handed_out.add(port)
                    return port
        if configured:
            raise OSError(f"no free port found in {PORT_RANGE_ENV} {low}-{top - 1}")
        port = _ephemeral_port(host)
        _handed_out.add(port)
        return port
