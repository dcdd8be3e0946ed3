"""``RequestAuthentication``: which JWTs a workload accepts (Istio's ``jwtRules``).

A request with a token that fails every rule is rejected (401); a request
without a token passes, unauthenticated (an AuthorizationPolicy requires one).
"""

from __future__ import annotations

from pydantic import Field

from pilotfish.api.base import ApiModel
from pilotfish.api.security.common import PolicyTargetReference, TypeWorkloadSelector

__all__ = ["ClaimToHeader", "JwtHeader", "JwtRule", "RequestAuthenticationSpec"]


class JwtHeader(ApiModel):
    """A header carrying the token; ``prefix`` (``"Bearer "``) is stripped."""

    name: str = ""
    prefix: str = ""


class ClaimToHeader(ApiModel):
    """Copy claim ``claim`` of a verified token into request header ``header``."""

    header: str = ""
    claim: str = ""


class JwtRule(ApiModel):
    """One issuer: where its keys are (``jwks`` inline JSON, or ``jwksUri``) and
    where tokens are read from (default ``Authorization: Bearer`` and ``access_token``)."""

    issuer: str = ""
    audiences: list[str] = Field(default_factory=list)
    jwks_uri: str = ""
    jwks: str = ""
    from_headers: list[JwtHeader] = Field(default_factory=list)
    from_params: list[str] = Field(default_factory=list)
    from_cookies: list[str] = Field(default_factory=list)
    output_payload_to_header: str = ""
    forward_original_token: bool = False
    output_claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    timeout: str | None = None  # fetching jwksUri; a duration such as "5s"


class RequestAuthenticationSpec(ApiModel):
    selector: TypeWorkloadSelector | None = None
    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
    jwt_rules: list[JwtRule] = Field(default_factory=list)
