"""Semantic checks of a RequestAuthentication, following Istio's validation rules."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.security.request_authentication import JwtRule, RequestAuthenticationSpec
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.policy_target import check_policy_target

__all__ = ["check_jwks", "check_jwks_uri", "validate"]


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, RequestAuthenticationSpec)
    f = Findings(resource)
    check_policy_target(f, resource, spec.selector, spec.target_ref, spec.target_refs)
    issuers: dict[str, int] = {}
    for i, rule in enumerate(spec.jwt_rules):
        path = f"spec.jwtRules[{i}]"
        _rule(f, rule, path)
        if rule.issuer and rule.issuer in issuers:
            f.warning(
                f"{path}.issuer",
                f"issuer {rule.issuer!r} is also used by jwtRules[{issuers[rule.issuer]}]",
            )
        issuers.setdefault(rule.issuer, i)
    return f.items


def _rule(f: Findings, rule: JwtRule, path: str) -> None:
    if not rule.issuer:
        f.error(f"{path}.issuer", "issuer must be set")
    for k, audience in enumerate(rule.audiences):
        if not audience:
            f.error(f"{path}.audiences[{k}]", "audience must not be empty")
    if rule.jwks_uri:
        f.add(f"{path}.jwksUri", check_jwks_uri(rule.jwks_uri))
    if rule.jwks:
        f.add(f"{path}.jwks", check_jwks(rule.jwks))
    if rule.jwks and rule.jwks_uri:
        f.warning(f"{path}.jwksUri", "both jwks and jwksUri are set; jwks is used")
    if not rule.jwks and not rule.jwks_uri:
        f.warning(
            path,
            "neither jwks nor jwksUri is set: the keys would have to be discovered "
            "from the issuer (OpenID Connect discovery)",
        )
    for k, header in enumerate(rule.from_headers):
        hp = f"{path}.fromHeaders[{k}].name"
        if not header.name:
            f.error(hp, "header name must not be empty")
        else:
            f.add(hp, checks.check_header_name(header.name))
    for k, param in enumerate(rule.from_params):
        if not param:
            f.error(f"{path}.fromParams[{k}]", "query parameter name must not be empty")
    for k, cookie in enumerate(rule.from_cookies):
        if not cookie:
            f.error(f"{path}.fromCookies[{k}]", "cookie name must not be empty")
    if rule.output_payload_to_header:
        f.add(
            f"{path}.outputPayloadToHeader",
            checks.check_header_name(rule.output_payload_to_header),
        )
    for k, out in enumerate(rule.output_claim_to_headers):
        op = f"{path}.outputClaimToHeaders[{k}]"
        if not out.claim:
            f.error(f"{op}.claim", "claim must not be empty")
        if not out.header:
            f.error(f"{op}.header", "header must not be empty")
        else:
            f.add(f"{op}.header", checks.check_header_name(out.header))
    if rule.timeout is not None:
        f.add(f"{path}.timeout", checks.check_duration(rule.timeout))


def check_jwks_uri(uri: str) -> str | None:
    """An absolute ``http``/``https`` URL with a host (and a valid port, if any)."""
    try:
        parts = urlsplit(uri)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError:
        return f"jwksUri {uri!r} is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return f"jwksUri {uri!r} must be an http:// or https:// URL"
    if not parts.hostname:
        return f"jwksUri {uri!r} has no host"
    if port == 0:
        return f"jwksUri {uri!r} has port 0"
    return None


def check_jwks(text: str) -> str | None:
    """A JSON Web Key Set: a JSON object whose ``keys`` is a list of objects with ``kty``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return f"jwks is not valid JSON: {exc}"
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        return "jwks must be a JSON object with a 'keys' list (a JSON Web Key Set)"
    if not data["keys"]:
        return "jwks has no keys"
    for i, key in enumerate(data["keys"]):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            return f"jwks key {i} must be a JSON object with a 'kty' member"
    return None
