"""Explicit mode: pods are loopback addresses; no root, no capture.

Linux answers on every address of 127.0.0.0/8 without configuration, so
each pod gets its own 127.77.x.y and processes bind there. Nothing is
intercepted: apps reach services through their sidecar explicitly (e.g.
``HTTP_PROXY``), so there are no names to install and nothing on the host to
clean up besides the address allocations.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from ..ipam import Ipam
from .base import CaptureConfig, HostResources, Mode, PodAddress, ServiceName

__all__ = ["ExplicitNetwork"]

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


class ExplicitNetwork:
    """Pods as loopback addresses out of ``cidr`` (inside 127.0.0.0/8)."""

    mode: Mode = "explicit"

    def __init__(self, cidr: str = "127.77.0.0/16", *, ipam: Ipam | None = None) -> None:
        try:
            net = ipaddress.IPv4Network(cidr)
        except ValueError as exc:
            raise ValueError(f"invalid explicit-mode range {cidr!r}: {exc}") from exc
        if not net.subnet_of(_LOOPBACK):
            raise ValueError(f"explicit mode needs a range inside 127.0.0.0/8, got {cidr}")
        if ipam is not None and ipam.cidr != str(net):
            raise ValueError(f"restored IPAM range {ipam.cidr} differs from {net}")
        # The first address stays unused, mirroring the bridge in transparent mode.
        self.ipam = ipam if ipam is not None else Ipam(str(net), reserved=1)
        self._pods: dict[str, PodAddress] = {}

    def setup(self) -> None:
        """Nothing to create: loopback addresses need no configuration."""

    def create_pod(self, pod: str, capture: CaptureConfig | None) -> PodAddress:
        """A loopback address for ``pod`` (``capture`` is ignored: nothing is intercepted)."""
        address = PodAddress(pod=pod, ip=self.ipam.allocate(pod))
        self._pods[pod] = address
        return address

    def adopt_pod(self, pod: str, namespace: str | None = None) -> PodAddress:
        """Take over a pod of an earlier run: it keeps the address ``ipam`` holds for it.

        Raises ``ValueError`` if the restored allocations hold none.
        """
        ip = self.ipam.get(pod)
        if ip is None:
            raise ValueError(f"pod {pod!r} holds no address in the restored allocations")
        address = PodAddress(pod=pod, ip=ip)
        self._pods[pod] = address
        return address

    def delete_pod(self, pod: str) -> None:
        """Release the pod's address. Idempotent."""
        self._pods.pop(pod, None)
        self.ipam.release(pod)

    def update_names(self, names: Sequence[ServiceName], pods: Mapping[str, str]) -> None:
        """Nothing to do: apps reach services through their sidecar, not by VIP."""

    def pods(self) -> dict[str, PodAddress]:
        """pod -> address of every pod currently created."""
        return dict(self._pods)

    def resources(self) -> HostResources:
        """Always empty: explicit mode changes nothing on the host."""
        return HostResources()

    def teardown(self) -> None:
        """Release every address. Idempotent."""
        for pod in list(self.ipam.allocations()):
            self.ipam.release(pod)
        self._pods.clear()
