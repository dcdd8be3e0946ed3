"""Schemas of the Service Mesh Interface kinds Pilotfish serves.

- ``split.smi-spec.io`` TrafficSplit (v1alpha2, v1alpha3, v1alpha4): a root
  Service and weighted backend Services; from v1alpha3 on, ``matches`` names
  HTTPRouteGroups whose matches select the requests that are split.
- ``access.smi-spec.io`` TrafficTarget (v1alpha3): which service accounts may
  call the workloads of a destination service account, on which routes.
- ``specs.smi-spec.io`` HTTPRouteGroup and TCPRoute (v1alpha3, v1alpha4): the
  routes TrafficTargets and TrafficSplits name. TCPRoute's ``matches.ports``
  is v1alpha4's; v1alpha3's TCPRoute spec is empty.
"""

from __future__ import annotations

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = [
    "HTTPMatch",
    "HTTPRouteGroupSpec",
    "IdentityBinding",
    "SMITCPRouteSpec",
    "TCPMatch",
    "TrafficSplitBackend",
    "TrafficSplitMatch",
    "TrafficSplitSpec",
    "TrafficTargetRule",
    "TrafficTargetSpec",
]


class TrafficSplitBackend(ApiModel):
    service: str
    weight: int


class TrafficSplitMatch(ApiModel):
    """A route group reference (``kind: HTTPRouteGroup``)."""

    kind: str
    name: str
    api_group: str | None = None


class TrafficSplitSpec(ApiModel):
    service: str
    backends: list[TrafficSplitBackend] = Field(default_factory=list)
    matches: list[TrafficSplitMatch] = Field(default_factory=list)


class HTTPMatch(ApiModel):
    name: str
    path_regex: str | None = None
    methods: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)


class HTTPRouteGroupSpec(ApiModel):
    matches: list[HTTPMatch] = Field(default_factory=list)


class TCPMatch(ApiModel):
    name: str | None = None
    ports: list[int] = Field(default_factory=list)


class SMITCPRouteSpec(ApiModel):
    matches: TCPMatch | None = None


class IdentityBinding(ApiModel):
    """A destination or source identity (``kind: ServiceAccount``)."""

    kind: str
    name: str
    namespace: str | None = None
    port: int | None = None


class TrafficTargetRule(ApiModel):
    """A route reference: ``kind`` HTTPRouteGroup or TCPRoute; ``matches`` names
    some of an HTTPRouteGroup's matches (all of them when empty)."""

    kind: str
    name: str
    matches: list[str] = Field(default_factory=list)


class TrafficTargetSpec(ApiModel):
    destination: IdentityBinding
    sources: list[IdentityBinding] = Field(default_factory=list)
    rules: list[TrafficTargetRule] = Field(default_factory=list)
