"""JWT-claim route matches: parsed, validated and analyzed as Istio does.

The translation itself is pinned by the ``jwt-claim-routing`` translate golden
case, which real Envoy validates (``test_translate_envoy``).
"""

from __future__ import annotations

import textwrap

import pytest

from pilotfish.api.analyze import analyze_loaded
from pilotfish.api.loader import load_text
from pilotfish.model.jwt_claims import routing_claim

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: ["{host}"]
  gateways: {gateways}
  http:
  - match:
    - headers:
        "@request.auth.claims.group": {{exact: admin}}
    route: [{{destination: {{host: web}}}}]
"""
GATEWAY = """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"""
RA = """
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: {ns}}}
spec:
  {selector}
  jwtRules: [{{issuer: https://issuer.example.com}}]
"""


@pytest.mark.parametrize(
    ("key", "claims"),
    [
        ("@request.auth.claims.group", ("group",)),
        ("@request.auth.claims.org.team", ("org", "team")),
        ("@Request.Auth.Claims.sub", ("sub",)),
        ("@request.auth.claims[role.name]", ("role.name",)),
        ("@request.auth.claims[a][b]", ("a", "b")),
        ("@request.auth.claims", None),
        ("@request.auth.claims[]", None),
        ("x-group", None),
    ],
)
def test_routing_claim(key: str, claims: tuple[str, ...] | None) -> None:
    assert routing_claim(key) == claims


def _load(text: str) -> tuple[list[str], list[str]]:
    loaded = load_text(textwrap.dedent(text).lstrip("\n"), "test.yaml")
    errors = [f"{d.field}: {d.message}" for d in loaded.diagnostics if d.is_error]
    found = [d.field for d in analyze_loaded(loaded.resources) if d.code == "IST0149"]
    return errors, found


def test_claim_keys_are_accepted_on_gateways_and_need_a_request_authentication() -> None:
    text = VS.format(host="*", gateways="[istio-system/edge]") + GATEWAY
    errors, found = _load(text)
    assert errors == []
    assert found == ["spec.http[0].match[0].headers.@request.auth.claims.group"]
    # Near misses: a RequestAuthentication for the gateway pods, mesh-wide or selecting them.
    assert _load(text + RA.format(ns="istio-system", selector=""))[1] == []
    selecting = "selector: {matchLabels: {istio: ingressgateway}}"
    assert _load(text + RA.format(ns="istio-system", selector=selecting))[1] == []
    # ...but one selecting other pods does not apply.
    other = "selector: {matchLabels: {app: web}}"
    assert len(_load(text + RA.format(ns="istio-system", selector=other))[1]) == 1


def test_claim_keys_are_refused_off_gateways() -> None:
    errors, _ = _load(VS.format(host="web", gateways="[mesh]"))
    assert errors == [
        "spec.http[0].match[0].headers.@request.auth.claims.group: JWT claim based routing "
        "(key: @request.auth.claims.group) is only supported for gateways, found gateways "
        "['mesh']"
    ]
    # An ordinary invalid header name is still refused on gateways.
    bad = VS.format(host="*", gateways="[istio-system/edge]").replace(
        '"@request.auth.claims.group"', '"@bad header"'
    )
    errors, _ = _load(bad)
    assert [e.split(":")[0] for e in errors] == ["spec.http[0].match[0].headers.@bad header"]
