"""``AuthorizationPolicy``: allow, deny or audit requests to a workload.

Field names follow Istio's ``security.istio.io/v1`` API. Within a list the values
are ORed; the fields of a ``source``/``operation`` are ANDed; ``from``, ``to`` and
``when`` of a rule are ANDed. String values use Istio's matching: exact,
``prefix*``, ``*suffix``, or ``*`` (present).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.security.common import PolicyTargetReference, PortString, TypeWorkloadSelector

__all__ = [
    "Action",
    "AuthorizationPolicySpec",
    "Condition",
    "ExtensionProvider",
    "Operation",
    "Rule",
    "RuleFrom",
    "RuleTo",
    "Source",
]

Action = Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"]


class Source(ApiModel):
    """Attributes of the peer (mTLS identity, JWT identity, namespace, addresses)."""

    principals: list[str] = Field(default_factory=list)
    not_principals: list[str] = Field(default_factory=list)
    request_principals: list[str] = Field(default_factory=list)
    not_request_principals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    not_namespaces: list[str] = Field(default_factory=list)
    ip_blocks: list[str] = Field(default_factory=list)
    not_ip_blocks: list[str] = Field(default_factory=list)
    remote_ip_blocks: list[str] = Field(default_factory=list)
    not_remote_ip_blocks: list[str] = Field(default_factory=list)


class Operation(ApiModel):
    """Attributes of the request (host, port, method, path)."""

    hosts: list[str] = Field(default_factory=list)
    not_hosts: list[str] = Field(default_factory=list)
    ports: list[PortString] = Field(default_factory=list)
    not_ports: list[PortString] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=list)
    not_methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    not_paths: list[str] = Field(default_factory=list)


class RuleFrom(ApiModel):
    source: Source | None = None


class RuleTo(ApiModel):
    operation: Operation | None = None


class Condition(ApiModel):
    """``when`` entry: attribute ``key`` (``request.headers[x-user]``, ``source.ip``...)."""

    key: str = ""
    values: list[str] = Field(default_factory=list)
    not_values: list[str] = Field(default_factory=list)


class Rule(ApiModel):
    """Matches when any ``from`` AND any ``to`` AND every ``when`` match (absent = any)."""

    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class ExtensionProvider(ApiModel):
    name: str = ""


class AuthorizationPolicySpec(ApiModel):
    """Applies to the workloads of ``selector`` (or ``targetRef(s)``), else to the
    whole namespace (or mesh, in the root namespace). No rules: ALLOW matches
    nothing, so every request is denied."""

    selector: TypeWorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    action: Action = "ALLOW"
    provider: ExtensionProvider | None = None
    rules: list[Rule] = Field(default_factory=list)
