from __future__ import annotations

import json

import pytest
from api_testing import Loader

from pilotfish.api.security.request_authentication import RequestAuthenticationSpec

HEAD = """
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ra, namespace: foo}
spec:
"""
JWKS = json.dumps({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]})


def _indent(spec: str) -> str:
    return "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n"


def _problems(load: Loader, spec: str) -> dict[str, tuple[bool, str]]:
    result = load(HEAD + _indent(spec))
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


def test_every_field_parses(load: Loader) -> None:
    result = load(
        HEAD
        + _indent(
            f"""
selector: {{matchLabels: {{app: httpbin}}}}
jwtRules:
- issuer: issuer-foo
  audiences: [bookinfo, reviews]
  jwks: '{JWKS}'
  fromHeaders: [{{name: x-jwt, prefix: "Bearer "}}]
  fromParams: [token]
  fromCookies: [session]
  outputPayloadToHeader: x-payload
  forwardOriginalToken: true
  outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
- issuer: https://accounts.example.com
  jwksUri: https://127.0.0.1:8443/keys
  timeout: 2.5s
"""
        )
    )
    assert result.diagnostics == ()
    spec = result.resources[0].spec
    assert isinstance(spec, RequestAuthenticationSpec)
    first, second = spec.jwt_rules
    assert first.from_headers[0].prefix == "Bearer " and first.forward_original_token
    assert first.output_claim_to_headers[0].claim == "sub"
    assert first.output_payload_to_header == "x-payload" and first.from_cookies == ["session"]
    assert second.jwks_uri == "https://127.0.0.1:8443/keys" and second.timeout == "2.5s"
    assert not second.forward_original_token


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("jwtRules: [{jwksUri: 'http://127.0.0.1/k'}]", "spec.jwtRules[0].issuer", "must be set"),
        (
            "jwtRules: [{issuer: i, jwksUri: 'ftp://127.0.0.1/k'}]",
            "spec.jwtRules[0].jwksUri",
            "http:// or https://",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'https:///k'}]",
            "spec.jwtRules[0].jwksUri",
            "no host",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'https://127.0.0.1:99999/k'}]",
            "spec.jwtRules[0].jwksUri",
            "not a valid URL",
        ),
        ("jwtRules: [{issuer: i, jwks: 'not json'}]", "spec.jwtRules[0].jwks", "not valid JSON"),
        ("jwtRules: [{issuer: i, jwks: '[]'}]", "spec.jwtRules[0].jwks", "'keys' list"),
        ("jwtRules: [{issuer: i, jwks: '{\"keys\": []}'}]", "spec.jwtRules[0].jwks", "no keys"),
        (
            'jwtRules: [{issuer: i, jwks: \'{"keys": [{"n": 1}]}\'}]',
            "spec.jwtRules[0].jwks",
            "'kty'",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', audiences: ['']}]",
            "spec.jwtRules[0].audiences[0]",
            "must not be empty",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', fromHeaders: [{prefix: x}]}]",
            "spec.jwtRules[0].fromHeaders[0].name",
            "must not be empty",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', fromHeaders: [{name: 'a b'}]}]",
            "spec.jwtRules[0].fromHeaders[0].name",
            "invalid header name",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', fromParams: ['']}]",
            "spec.jwtRules[0].fromParams[0]",
            "must not be empty",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', fromCookies: ['']}]",
            "spec.jwtRules[0].fromCookies[0]",
            "must not be empty",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', "
            "outputClaimToHeaders: [{claim: sub}]}]",
            "spec.jwtRules[0].outputClaimToHeaders[0].header",
            "must not be empty",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', "
            "outputClaimToHeaders: [{header: x-sub}]}]",
            "spec.jwtRules[0].outputClaimToHeaders[0].claim",
            "must not be empty",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', outputPayloadToHeader: 'x:y'}]",
            "spec.jwtRules[0].outputPayloadToHeader",
            "invalid header name",
        ),
        (
            "jwtRules: [{issuer: i, jwksUri: 'http://127.0.0.1/k', timeout: soon}]",
            "spec.jwtRules[0].timeout",
            "soon",
        ),
        ("jwtRules: [{issuer: i, jwksURI: x}]", "spec.jwtRules[0].jwksURI", "unknown field"),
        (
            "targetRef: {kind: Gateway, group: apps, name: gw}",
            "spec.targetRef.group",
            "not valid for kind Gateway",
        ),
    ],
)
def test_errors(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, spec)
    assert field in problems, problems
    is_error, message = problems[field]
    assert is_error and fragment in message, message


def test_warnings(load: Loader) -> None:
    spec = f"""
jwtRules:
- {{issuer: a, jwks: '{JWKS}', jwksUri: 'https://127.0.0.1/keys'}}
- {{issuer: b}}
- {{issuer: a, jwks: '{JWKS}'}}
"""
    problems = _problems(load, spec)
    assert {f: e for f, (e, _) in problems.items()} == {
        "spec.jwtRules[0].jwksUri": False,
        "spec.jwtRules[1]": False,
        "spec.jwtRules[2].issuer": False,
    }
    assert "jwks is used" in problems["spec.jwtRules[0].jwksUri"][1]
    assert "neither jwks nor jwksUri" in problems["spec.jwtRules[1]"][1]
    assert "also used by jwtRules[0]" in problems["spec.jwtRules[2].issuer"][1]
