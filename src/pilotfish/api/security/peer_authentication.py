"""``PeerAuthentication``: which mutual-TLS mode a workload's inbound side accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.security.common import TypeWorkloadSelector

__all__ = ["MtlsMode", "PeerAuthenticationMtls", "PeerAuthenticationSpec"]

#: ``UNSET`` inherits from the parent scope (namespace, then mesh); the mesh default
#: is ``PERMISSIVE``.
MtlsMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]


class PeerAuthenticationMtls(ApiModel):
    mode: MtlsMode = "UNSET"


class PeerAuthenticationSpec(ApiModel):
    """Mesh-wide (root namespace, no selector), namespace-wide (no selector) or
    workload-specific (``selector``) mTLS mode; ``portLevelMtls`` overrides it per
    workload port and needs a selector."""

    selector: TypeWorkloadSelector | None = None
    mtls: PeerAuthenticationMtls | None = None
    port_level_mtls: dict[int, PeerAuthenticationMtls] = Field(default_factory=dict)
