"""Base pieces shared by every resource schema.

Schemas use the exact field names users know from Istio and Kubernetes
(camelCase in YAML), are immutable once parsed, and reject unknown fields.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["ApiModel", "ObjectMeta"]


class ApiModel(BaseModel):
    """Base for every schema object: camelCase aliases, frozen, unknown fields forbidden."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        extra="forbid",
        validate_default=False,
        defer_build=True,
    )


class ObjectMeta(ApiModel):
    """Kubernetes-style metadata. ``namespace`` defaults to ``default`` as in kubectl."""

    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Accepted so that manifests exported from a cluster load unchanged.
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
