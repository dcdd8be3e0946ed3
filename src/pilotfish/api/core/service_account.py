"""Kubernetes ``v1`` ServiceAccount: the identity a pod's ``serviceAccountName`` names.

A ServiceAccount has no ``spec``; its few fields sit at the top level of the
document (``TOP_LEVEL_FIELDS``), as for a Secret. The mesh only needs to know
that it exists (workload identities are SPIFFE IDs built from its name); the
fields are type-checked loosely and otherwise unused.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = ["TOP_LEVEL_FIELDS", "ServiceAccountSpec"]

#: The document's top-level keys that form a ServiceAccount's "spec" (YAML spelling).
TOP_LEVEL_FIELDS: Final = frozenset({"secrets", "imagePullSecrets", "automountServiceAccountToken"})


class ServiceAccountSpec(ApiModel):
    secrets: list[dict[str, Any]] = Field(default_factory=list)
    image_pull_secrets: list[dict[str, Any]] = Field(default_factory=list)
    automount_service_account_token: bool | None = None
