"""WorkloadEntry: a workload outside Kubernetes (a VM, a local process)."""

from __future__ import annotations

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = ["WorkloadEntrySpec"]


class WorkloadEntrySpec(ApiModel):
    """Also the type of ``ServiceEntry.endpoints`` items, as in Istio."""

    address: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None
