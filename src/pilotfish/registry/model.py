"""Registry data: mesh services, their ports and the endpoints behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "WORKLOAD_NAME_ANNOTATION",
    "Instance",
    "MeshService",
    "Protocol",
    "Resolution",
    "ServicePort",
]

# The workload a WorkloadEntry stands for, when its own name is not it (the
# runtime registers each pod, named after the pod, for its Workload).
WORKLOAD_NAME_ANNOTATION = "pilotfish.io/workload-name"

# Istio's protocol names, upper case. HTTP-family ports get HTTP routing.
Protocol = Literal[
    "HTTP",
    "HTTP2",
    "GRPC",
    "GRPC-WEB",
    "HTTPS",
    "TLS",
    "TCP",
    "MONGO",
    "REDIS",
    "MYSQL",
    "UDP",
    "UNKNOWN",
]
Resolution = Literal["EDS", "STATIC", "DNS", "DNS_ROUND_ROBIN", "NONE"]

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A port of a service. ``target_port`` is an int, a port name, or None (same as port)."""

    name: str
    port: int
    protocol: Protocol
    target_port: int | str | None = None

    @property
    def is_http(self) -> bool:
        return self.protocol in HTTP_PROTOCOLS

    @property
    def is_http2(self) -> bool:
        return self.protocol in ("HTTP2", "GRPC", "GRPC-WEB")


@dataclass(frozen=True, slots=True)
class MeshService:
    """A host the mesh can route to (from a Kubernetes Service or a ServiceEntry host).

    ``resolution`` says how its endpoints are found: EDS (selected workloads),
    STATIC (fixed addresses, also sent over EDS), DNS (Envoy resolves the
    endpoint names), NONE (the original destination is used as is).
    """

    hostname: str
    namespace: str
    ports: tuple[ServicePort, ...]
    addresses: tuple[str, ...] = ()
    resolution: Resolution = "EDS"
    mesh_external: bool = False
    selector: tuple[tuple[str, str], ...] | None = None
    source_kind: str = "Service"
    source_name: str = ""
    # Namespaces that may see the service (``exportTo``): "*" all, "." its own,
    # "~" none, or names; empty means "*".
    export_to: tuple[str, ...] = ()

    def port(self, number: int) -> ServicePort | None:
        for p in self.ports:
            if p.port == number:
                return p
        return None


@dataclass(frozen=True, slots=True)
class Instance:
    """One endpoint of one service port: where traffic for it goes."""

    hostname: str
    service_port: int
    address: str
    port: int
    labels: tuple[tuple[str, str], ...] = ()
    locality: str = ""
    weight: int = 1
    service_account: str = ""
    # The workload behind the endpoint (a Workload's or WorkloadEntry's name) and its
    # namespace: the source proxy's destination_workload labels. "" when unknown.
    workload: str = ""
    namespace: str = ""

    def matches(self, selector: dict[str, str]) -> bool:
        own = dict(self.labels)
        return all(own.get(k) == v for k, v in selector.items())
