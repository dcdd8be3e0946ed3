"""Service Mesh Interface kinds (the ``*.smi-spec.io`` groups).

SMI was archived by the CNCF in 2023; Pilotfish serves it for users moving
off OSM and other SMI meshes (see docs/smi.md).
"""

from __future__ import annotations

from typing import Final

from pilotfish.api.kind_info import KindInfo
from pilotfish.api.smi.types import (
    HTTPRouteGroupSpec,
    SMITCPRouteSpec,
    TrafficSplitSpec,
    TrafficTargetSpec,
)

__all__ = ["GROUPS", "KIND_INFOS"]

#: The SMI API groups.
GROUPS: Final = frozenset({"split.smi-spec.io", "access.smi-spec.io", "specs.smi-spec.io"})

_SPLIT: Final = frozenset(f"split.smi-spec.io/{v}" for v in ("v1alpha2", "v1alpha3", "v1alpha4"))
_ACCESS: Final = frozenset({"access.smi-spec.io/v1alpha3"})
_SPECS: Final = frozenset(f"specs.smi-spec.io/{v}" for v in ("v1alpha3", "v1alpha4"))

#: The SMI kinds Pilotfish serves.
KIND_INFOS: Final[tuple[KindInfo, ...]] = (
    KindInfo("TrafficSplit", TrafficSplitSpec, _SPLIT, "trafficsplits"),
    KindInfo("TrafficTarget", TrafficTargetSpec, _ACCESS, "traffictargets"),
    KindInfo("HTTPRouteGroup", HTTPRouteGroupSpec, _SPECS, "httproutegroups"),
    KindInfo("SMITCPRoute", SMITCPRouteSpec, _SPECS, "tcproutes", document_kind="TCPRoute"),
)
