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
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port"]

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


def _bindable(port: int, host: str) -> bool:
    for address in {host, "0.0.0.0"}:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def _ephemeral_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing in this network namespace holds, outside the ephemeral range
    when the kernel leaves room below it (else the kernel's choice, as before)."""
    top = _ephemeral_start()
    with _lock:
        if top - _LOWEST >= 1000:
            for _ in range(200):
                port = random.randrange(_LOWEST, top)
                if port not in _handed_out and _bindable(port, host):
                    _handed_out.add(port)
                    return port
        port = _ephemeral_port(host)
        _handed_out.add(port)
        return port
