"""WorkloadGroup: the template of workloads that join the mesh from other hosts.

As Istio's ``networking.istio.io/v1 WorkloadGroup``: ``metadata`` (labels and
annotations every member gets), ``template`` (a WorkloadEntry without an
address: the address is the joining host's), and ``probe`` (the readiness
probe Istio's agent runs; accepted, not run by Pilotfish: see validation).
"""

from __future__ import annotations

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec

__all__ = ["WorkloadGroupMeta", "WorkloadGroupProbe", "WorkloadGroupSpec", "member_name"]


class WorkloadGroupMeta(ApiModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class HttpGetProbe(ApiModel):
    path: str | None = None
    port: int
    host: str | None = None
    scheme: str | None = None
    http_headers: list[dict[str, str]] = Field(default_factory=list)


class TcpSocketProbe(ApiModel):
    host: str | None = None
    port: int


class ExecProbe(ApiModel):
    command: list[str] = Field(default_factory=list)


class GrpcProbe(ApiModel):
    port: int
    service: str | None = None


class WorkloadGroupProbe(ApiModel):
    initial_delay_seconds: int | None = None
    timeout_seconds: int | None = None
    period_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None
    http_get: HttpGetProbe | None = None
    tcp_socket: TcpSocketProbe | None = None
    exec: ExecProbe | None = None
    grpc: GrpcProbe | None = None


class WorkloadGroupSpec(ApiModel):
    metadata: WorkloadGroupMeta = Field(default_factory=WorkloadGroupMeta)
    template: WorkloadEntrySpec = Field(default_factory=WorkloadEntrySpec)
    probe: WorkloadGroupProbe | None = None


def member_name(group: str, address: str) -> str:
    """The name of a group member at ``address``: ``<group>-<address>`` with dots and
    colons as dashes (a DNS label, one per host address). Also its proxy's name."""
    return f"{group}-{address.replace('.', '-').replace(':', '-')}"
