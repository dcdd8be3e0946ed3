"""Gateway API schemas: the CRDs' defaults, and their validation as errors at file:line:field."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_testing import load_snippet

from pilotfish.api.analyze import analyze_paths
from pilotfish.api.gateway_api.common import gateway_duration_ms
from pilotfish.api.gateway_api.gateway import GatewaySpec
from pilotfish.api.gateway_api.http_route import HTTPRouteSpec
from pilotfish.api.kinds import DOCUMENT_KIND, PREFERRED_API_VERSION, SHORT_NAMES, kind_for_plural

SAMPLES = Path(__file__).resolve().parents[2] / "testdata" / "istio-samples"


def _errors(text: str) -> dict[str, str]:
    result = load_snippet(text)
    return {d.field: d.message for d in result.diagnostics if d.is_error}


def _route(rule: str, head: str = "") -> str:
    body = "\n".join("  " + line for line in rule.strip("\n").splitlines())
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
        f"spec:\n  parentRefs: [{{name: gw}}]\n{head}  rules:\n{body}\n"
    )


def test_kinds_resolve_with_their_document_spelling() -> None:
    assert kind_for_plural("gateways.gateway.networking.k8s.io") == "KubernetesGateway"
    assert kind_for_plural("gateways") == "Gateway"
    assert SHORT_NAMES["gtw"] == "KubernetesGateway"
    assert DOCUMENT_KIND["KubernetesGateway"] == "Gateway"
    assert PREFERRED_API_VERSION["HTTPRoute"] == "gateway.networking.k8s.io/v1"
    assert PREFERRED_API_VERSION["TCPRoute"] == "gateway.networking.k8s.io/v1alpha2"
    assert PREFERRED_API_VERSION["BackendTLSPolicy"] == "gateway.networking.k8s.io/v1"


def test_the_crd_defaults_are_applied() -> None:
    loaded = load_snippet(_route("- backendRefs: [{name: svc, port: 80}]"))
    assert [d.format() for d in loaded.diagnostics] == []
    spec = loaded.resources[0].spec
    assert isinstance(spec, HTTPRouteSpec)
    ref = spec.parent_refs[0]
    assert (ref.group, ref.kind, ref.namespace) == ("gateway.networking.k8s.io", "Gateway", None)
    match = spec.rules[0].matches[0]
    assert (match.path.type, match.path.value) == ("PathPrefix", "/")
    backend = spec.rules[0].backend_refs[0]
    assert (backend.group, backend.kind, backend.weight) == ("", "Service", 1)
    assert HTTPRouteSpec().rules[0].matches[0].path.value == "/"


def test_gateway_listener_defaults() -> None:
    spec = GatewaySpec.model_validate(
        {"gatewayClassName": "istio", "listeners": [{"name": "a", "port": 80, "protocol": "HTTP"}]}
    )
    assert spec.listeners[0].allowed_routes.namespaces.from_ == "Same"


@pytest.mark.parametrize(
    ("rule", "field", "fragment"),
    [
        ("- matches: [{path: {value: foo}}]", "spec.rules[0].matches[0].path", "absolute path"),
        ("- matches: [{path: {value: /a//b}}]", "spec.rules[0].matches[0].path", "'//'"),
        ("- matches: [{path: {type: Bogus}}]", "spec.rules[0].matches[0].path.type", "Exact"),
        (
            "- matches: [{headers: [{name: 'a b', value: x}]}]",
            "spec.rules[0].matches[0].headers[0].name",
            "header name",
        ),
        (
            "- matches: [{headers: [{name: X-A, value: x}, {name: x-a, value: y}]}]",
            "spec.rules[0].matches[0]",
            "more than once",
        ),
        ("- matches: [{method: FETCH}]", "spec.rules[0].matches[0].method", "PATCH"),
        (
            "- filters: [{type: RequestRedirect}]",
            "spec.rules[0].filters[0]",
            "requestRedirect must be set",
        ),
        (
            "- filters: [{type: URLRewrite, urlRewrite: {}, requestRedirect: {}}]",
            "spec.rules[0].filters[0]",
            "requestRedirect must not be set",
        ),
        (
            "- filters: [{type: RequestRedirect, requestRedirect: {statusCode: 305}}]",
            "spec.rules[0].filters[0].requestRedirect.statusCode",
            "308",
        ),
        (
            "- filters: [{type: RequestRedirect, requestRedirect: {}}, "
            "{type: URLRewrite, urlRewrite: {}}]",
            "spec.rules[0].filters",
            "cannot both",
        ),
        (
            "- matches: [{path: {type: Exact, value: /a}}]\n  filters: [{type: URLRewrite, "
            "urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]",
            "spec.rules[0]",
            "PathPrefix",
        ),
        (
            "- filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath}}}]",
            "spec.rules[0].filters[0].urlRewrite.path",
            "replaceFullPath is required",
        ),
        (
            "- filters: [{type: RequestRedirect, requestRedirect: {hostname: '*.a.com'}}]",
            "spec.rules[0].filters[0].requestRedirect.hostname",
            "DNS name",
        ),
        (
            "- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
            "percent: 101}}]",
            "spec.rules[0].filters[0].requestMirror.percent",
            "less than or equal to 100",
        ),
        (
            "- filters: [{type: RequestMirror, requestMirror: {backendRef: {name: m, port: 80}, "
            "percent: 5, fraction: {numerator: 1}}}]",
            "spec.rules[0].filters[0].requestMirror",
            "only one of percent or fraction",
        ),
        (
            "- backendRefs: [{name: s, port: 80, weight: 1000001}]",
            "spec.rules[0].backendRefs[0].weight",
            "1000000",
        ),
        ("- backendRefs: [{name: s}]", "spec.rules[0].backendRefs[0]", "port is required"),
        ("- backendRefs: [{name: s, port: 0}]", "spec.rules[0].backendRefs[0].port", "1"),
        ("- timeouts: {request: 10x}", "spec.rules[0].timeouts.request", "duration"),
        (
            "- timeouts: {request: 1s, backendRequest: 2s}",
            "spec.rules[0].timeouts",
            "no longer than request",
        ),
    ],
)
def test_route_errors_name_the_field(rule: str, field: str, fragment: str) -> None:
    errors = _errors(_route(rule))
    assert field in errors, errors
    assert fragment in errors[field]


def test_route_hostnames_allow_wildcards_but_not_ips() -> None:
    assert _errors(_route("- {}", "  hostnames: ['*.example.com', a.b]\n")) == {}
    errors = _errors(_route("- {}", "  hostnames: ['10.0.0.1', 'a.*.com']\n"))
    assert "IP address" in errors["spec.hostnames[0]"]
    assert "DNS name" in errors["spec.hostnames[1]"]


GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: istio
  listeners:
"""


@pytest.mark.parametrize(
    ("listeners", "field", "fragment"),
    [
        ("- {name: a, port: 443, protocol: HTTPS}", "spec.listeners[0]", "tls is required"),
        (
            "- {name: a, port: 80, protocol: HTTP, tls: {certificateRefs: [{name: c}]}}",
            "spec.listeners[0]",
            "must not be set",
        ),
        ("- {name: a, port: 9, protocol: TCP, hostname: a.com}", "spec.listeners[0]", "hostname"),
        ("- {name: a, port: 70000, protocol: HTTP}", "spec.listeners[0].port", "65535"),
        ("- {name: A_b, port: 80, protocol: HTTP}", "spec.listeners[0].name", "DNS subdomain"),
        (
            "- {name: a, port: 80, protocol: HTTP}\n- {name: a, port: 81, protocol: HTTP}",
            "spec",
            "more than once",
        ),
        (
            "- {name: a, port: 80, protocol: HTTP}\n- {name: b, port: 80, protocol: HTTP}",
            "spec",
            "same port, protocol and hostname",
        ),
        (
            "- {name: a, port: 443, protocol: HTTPS, tls: {mode: Terminate}}",
            "spec.listeners[0].tls",
            "certificateRefs",
        ),
        (
            "- {name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector}}}",
            "spec.listeners[0].allowedRoutes.namespaces",
            "selector is required",
        ),
    ],
)
def test_gateway_errors_name_the_field(listeners: str, field: str, fragment: str) -> None:
    body = "\n".join("  " + line for line in listeners.splitlines())
    errors = _errors(GATEWAY.lstrip("\n") + body + "\n")
    assert field in errors, errors
    assert fragment in errors[field]


def test_errors_carry_the_line_of_the_field() -> None:
    text = _route("- backendRefs:\n  - name: s\n    port: 80\n    weight: -1")
    found = [d for d in load_snippet(text).diagnostics if d.is_error]
    assert len(found) == 1
    assert found[0].source is not None
    assert found[0].source.line == 10  # the weight's own line


OTHER_KINDS = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pilotfish}
spec: {controllerName: pilotfish.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
    backendRefs: [{name: grpc, port: 50051}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: rg, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: BackendTLSPolicy
metadata: {name: tls}
spec:
  targetRefs: [{group: "", kind: Service, name: secure}]
  validation: {wellKnownCACertificates: System, hostname: secure.example.com}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: t}
spec:
  parentRefs: [{name: gw, sectionName: tls}]
  hostnames: [secure.example.com]
  rules: [{backendRefs: [{name: secure, port: 443}]}]
"""


def test_other_kinds_load() -> None:
    loaded = load_snippet(OTHER_KINDS)
    assert [d.format() for d in loaded.diagnostics] == []
    assert sorted(r.kind for r in loaded.resources) == [
        "BackendTLSPolicy",
        "GRPCRoute",
        "GatewayClass",
        "ReferenceGrant",
        "TLSRoute",
    ]


@pytest.mark.parametrize(
    ("doc", "field", "fragment"),
    [
        (
            "kind: GRPCRoute\nspec: {rules: [{matches: [{method: {type: Exact}}]}]}",
            "spec.rules[0].matches[0].method",
            "service and method",
        ),
        (
            "kind: GRPCRoute\nspec: {rules: [{filters: [{type: RequestRedirect}]}]}",
            "spec.rules[0].filters[0].type",
            "RequestHeaderModifier",
        ),
        (
            "kind: BackendTLSPolicy\nspec: {targetRefs: [{name: s}], validation: {hostname: a}}",
            "spec.validation",
            "exactly one of",
        ),
        (
            "kind: ReferenceGrant\nspec: {from: [], to: [{group: '', kind: Service}]}",
            "spec.from",
            "at least 1",
        ),
        (
            "kind: TCPRoute\nspec: {rules: [{backendRefs: []}]}",
            "spec.rules[0].backendRefs",
            "at least 1",
        ),
        (
            "kind: GatewayClass\nspec: {controllerName: nope}",
            "spec.controllerName",
            "domain-prefixed",
        ),
    ],
)
def test_other_kinds_validate(doc: str, field: str, fragment: str) -> None:
    version = "v1alpha2" if "TCPRoute" in doc else "v1"
    errors = _errors(
        f"apiVersion: gateway.networking.k8s.io/{version}\nmetadata: {{name: x}}\n{doc}\n"
    )
    assert field in errors, errors
    assert fragment in errors[field]


def test_durations() -> None:
    assert gateway_duration_ms("1h2m3s4ms") == 3_723_004
    assert gateway_duration_ms("500ms") == 500


def test_istio_gateway_api_samples_load() -> None:
    files = sorted(SAMPLES.glob("*/gateway-api/*.yaml"))
    assert len(files) == 12
    for path in files:
        assert [d.format() for d in analyze_paths([str(path)]) if d.is_error] == []
