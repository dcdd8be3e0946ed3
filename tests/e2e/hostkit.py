"""Hosts for multi-host tests: network namespaces with an address each on a test bridge.

A "host" is a named network namespace (``ip netns add``) holding one end of a
veth pair whose other end is on a bridge in the root namespace; it has its own
address, forwarding on (it routes for its pods), and routes to the other
hosts' pod ranges, as a network admin would set them up between machines.

Code runs "on" a host with ``on_host``: the call runs in a fresh thread that
has joined the host's network namespace (``setns(2)`` acts on the calling
thread only), so everything it opens (sockets, and subprocesses, which inherit
the thread's namespaces) is on that host, while the test's own threads stay in
the root namespace. The mount namespace is kept, so a pilotfish on a host
creates pod namespaces under ``/var/run/netns`` that everyone sees (``ip netns
exec`` would give the process a private mount namespace, in which those
mounts do not propagate back out).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Host", "TestBridge", "on_host"]

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _run(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)


def _quiet(*argv: str) -> None:
    subprocess.run(argv, capture_output=True, timeout=30, check=False)


def on_host(netns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a thread inside network namespace ``netns``."""
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns({netns}): {os.strerror(errno)}")
            finally:
                os.close(fd)
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc

    thread = threading.Thread(target=body, name=f"on-{netns}")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]  # type: ignore[no-any-return]


@dataclass
class TestBridge:
    """The bridge in the root namespace the hosts' veths hang on."""

    name: str
    address: str  # the root namespace's own, /24
    __test__ = False  # not a pytest test class

    def create(self) -> None:
        self.remove()
        _run("ip", "link", "add", self.name, "type", "bridge")
        _run("ip", "addr", "add", f"{self.address}/24", "dev", self.name)
        _run("ip", "link", "set", self.name, "up")

    def remove(self) -> None:
        _quiet("ip", "link", "del", self.name)


@dataclass
class Host:
    netns: str
    veth: str  # prefix: <veth>r on the bridge, <veth>h in the host
    address: str
    pod_cidr: str

    def create(self, bridge: TestBridge) -> None:
        self.remove()
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", f"{self.veth}r", "type", "veth", "peer", "name", f"{self.veth}h")
        _run("ip", "link", "set", f"{self.veth}h", "netns", self.netns)
        _run("ip", "link", "set", f"{self.veth}r", "master", bridge.name, "up")
        self.ip("link", "set", "lo", "up")
        self.ip("addr", "add", f"{self.address}/24", "dev", f"{self.veth}h")
        self.ip("link", "set", f"{self.veth}h", "up")
        # The host routes between its pods' bridge and the other hosts.
        _run("ip", "netns", "exec", self.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def route_to(self, other: Host) -> None:
        self.ip("route", "replace", other.pod_cidr, "via", other.address)

    def ip(self, *argv: str) -> None:
        _run("ip", "-n", self.netns, *argv)

    def iptables(self, *argv: str) -> None:
        _run("ip", "netns", "exec", self.netns, "iptables", "-w", *argv)

    def remove(self) -> None:
        _quiet("ip", "netns", "del", self.netns)
        _quiet("ip", "link", "del", f"{self.veth}r")

    def leftovers(self) -> list[str]:
        """This host's own namespace or veth if still there."""
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        left = [f"netns {self.netns}"] if self.netns in names.split() else []
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        if f" {self.veth}r@" in links or f" {self.veth}r:" in links:
            left.append(f"veth {self.veth}r")
        return left
