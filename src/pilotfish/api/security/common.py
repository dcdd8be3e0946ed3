"""Messages shared by the ``security.istio.io`` kinds: where a policy applies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from pilotfish.api.base import ApiModel
from pilotfish.api.networking.common import TypeWorkloadSelector

__all__ = ["API_VERSIONS", "PolicyTargetReference", "PortString", "TypeWorkloadSelector"]

#: apiVersions accepted for every security kind (``v1`` is preferred).
API_VERSIONS = frozenset({"security.istio.io/v1", "security.istio.io/v1beta1"})


def _number_to_text(value: Any) -> Any:
    # Istio's schema has ports as strings ("8080"); a YAML number is what users
    # naturally write, so it is accepted and kept as its decimal text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


#: A port written as a string (Istio's spelling) or a number.
PortString = Annotated[str, BeforeValidator(_number_to_text)]


class PolicyTargetReference(ApiModel):
    """``istio.type.v1beta1.PolicyTargetReference``: the resource a policy attaches to
    (a ``Service`` or a ``Gateway``); ``namespace`` must be the policy's own if set."""

    group: str = ""
    kind: str
    name: str
    namespace: str = ""
