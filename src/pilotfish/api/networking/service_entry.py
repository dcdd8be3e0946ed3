"""ServiceEntry: adds hosts (usually external) to the mesh's service registry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.networking.common import WorkloadSelector
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec

__all__ = ["ServiceEntrySpec", "ServicePort"]

Location = Literal["MESH_EXTERNAL", "MESH_INTERNAL"]
Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"]


class ServicePort(ApiModel):
    """A port of a ServiceEntry (Istio's ``ServicePort`` message)."""

    number: int
    protocol: str | None = None
    name: str
    target_port: int | None = None


class ServiceEntrySpec(ApiModel):
    hosts: list[str] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Location | None = None
    resolution: Resolution = "NONE"
    endpoints: list[WorkloadEntrySpec] | None = None
    workload_selector: WorkloadSelector | None = None
    export_to: list[str] = Field(default_factory=list)
    subject_alt_names: list[str] = Field(default_factory=list)
