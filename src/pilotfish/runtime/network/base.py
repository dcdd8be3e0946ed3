"""How a pod gets onto the mesh's network: the contract both modes implement.

Theory of operation: the runtime asks a ``PodNetwork`` for an address per pod
and a way to start processes "inside" that pod. In transparent mode a pod is
a Linux network namespace on the mesh bridge with iptables rules that hand
its TCP traffic to the sidecar; in explicit mode a pod is a loopback address
(127.x.y.z) and apps dial their sidecar themselves. Everything a network
creates on the host is recorded (``HostResources``) so that a later run can
remove it even after a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["CaptureConfig", "HostResources", "PodAddress", "PodNetwork", "ServiceName"]

Mode = Literal["transparent", "explicit"]

# The uid/gid Envoy runs as in transparent mode; its own traffic is never captured.
PROXY_UID = 1337
PROXY_GID = 1337


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """Istio-style capture settings for one pod (transparent mode only)."""

    outbound_port: int = 15001
    inbound_port: int = 15006
    proxy_uid: int = PROXY_UID
    proxy_gid: int = PROXY_GID
    # Inbound ports that reach the pod without the sidecar (its own health/stats ports).
    exclude_inbound_ports: tuple[int, ...] = (15020, 15021, 15090)
    # Destinations never captured (e.g. the control plane's address).
    exclude_outbound_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PodAddress:
    """Where a pod lives. ``netns`` is None in explicit mode.

    ``exec_prefix`` is prepended to a command to run it inside the pod
    (``["ip", "netns", "exec", "<netns>"]`` in transparent mode, empty otherwise).
    """

    pod: str
    ip: str
    netns: str | None = None
    exec_prefix: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceName:
    """A name pods resolve to a service VIP (``reviews.default.svc.cluster.local``)."""

    hostname: str
    namespace: str
    vip: str


@dataclass
class HostResources:
    """What the runtime created on the host; persisted in the state dir for cleanup."""

    bridge: str | None = None
    netns: list[str] = field(default_factory=list)
    host_veths: list[str] = field(default_factory=list)
    iptables_rules: list[list[str]] = field(default_factory=list)  # full argv to delete
    files: list[str] = field(default_factory=list)


class PodNetwork(Protocol):
    mode: Mode

    def setup(self) -> None:
        """Create shared pieces (the bridge). Idempotent."""

    def create_pod(self, pod: str, capture: CaptureConfig | None) -> PodAddress:
        """Create the pod's network (namespace, veth, address, capture rules)."""

    def adopt_pod(self, pod: str, namespace: str | None = None) -> PodAddress:
        """Take over a pod network an earlier run created (its address from the
        restored allocations); raises ``ValueError`` if it cannot be."""

    def delete_pod(self, pod: str) -> None:
        """Remove one pod's network. Idempotent."""

    def update_names(self, names: Sequence[ServiceName], pods: Mapping[str, str]) -> None:
        """Make service names resolve to VIPs inside pods (``pods``: pod -> namespace)."""

    def teardown(self) -> None:
        """Remove everything this network created. Idempotent; safe after a crash."""
