"""Ingress, IngressClass and SMI kinds: loading, apiVersions, and the validation
errors users get (file, line, field, reason)."""

from __future__ import annotations

import pytest
from api_testing import load_snippet

from pilotfish.api.ingress.types import IngressSpec
from pilotfish.api.kinds import DOCUMENT_KIND, SHORT_NAMES, kind_for_plural, resolve_document_kind
from pilotfish.api.smi.types import SMITCPRouteSpec, TrafficSplitSpec


def _errors(text: str) -> dict[str, str]:
    result = load_snippet(text)
    return {
        d.field: f"{d.source.line if d.source else 0}: {d.message}"
        for d in result.diagnostics
        if d.is_error
    }


def test_kinds_resolve_by_group() -> None:
    assert resolve_document_kind("networking.k8s.io/v1", "Ingress") == "Ingress"
    assert resolve_document_kind("specs.smi-spec.io/v1alpha4", "TCPRoute") == "SMITCPRoute"
    assert DOCUMENT_KIND["SMITCPRoute"] == "TCPRoute"
    assert SHORT_NAMES["ing"] == "Ingress"
    assert kind_for_plural("tcproutes.specs.smi-spec.io") == "SMITCPRoute"
    assert kind_for_plural("trafficsplits") == "TrafficSplit"


def test_an_ingress_loads_with_typed_fields() -> None:
    result = load_snippet(
        """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: web}
        spec:
          rules:
          - host: shop.example.com
            http:
              paths:
              - path: /
                pathType: Prefix
                backend: {service: {name: shop, port: {name: http}}}
        """
    )
    assert result.diagnostics == ()
    [ingress] = result.resources
    assert isinstance(ingress.spec, IngressSpec)
    path = ingress.spec.rules[0].http.paths[0]  # type: ignore[union-attr]
    assert (path.path_type, path.backend.service.port.name) == ("Prefix", "http")  # type: ignore[union-attr]


INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web}}
spec:
  tls:
  - hosts: [Bad_Host]
    secretName: {secret}
  rules:
  - host: {host}
    http:
      paths:
      - path: {path}
{path_type}
        backend: {backend}
"""


def _ingress(**over: str) -> str:
    values = {
        "secret": "cert",
        "host": "shop.example.com",
        "path": "/a",
        "path_type": "        pathType: Prefix",
        "backend": "{service: {name: shop, port: {number: 80}}}",
    } | over
    return INGRESS.format(**values)


@pytest.mark.parametrize(
    ("over", "field", "line", "message"),
    [
        ({"path_type": ""}, "spec.rules[0].http.paths[0].pathType", 12, "pathType is required"),
        (
            {"path_type": "        pathType: Regex"},
            "spec.rules[0].http.paths[0].pathType",
            13,
            "unknown pathType 'Regex' (use one of Exact, Prefix, ImplementationSpecific)",
        ),
        ({"path": "a"}, "spec.rules[0].http.paths[0].path", 12, "must be an absolute path"),
        ({"path": "/a//b"}, "spec.rules[0].http.paths[0].path", 12, "must not contain '//'"),
        (
            {"backend": "{service: {name: shop, port: {number: 80, name: http}}}"},
            "spec.rules[0].http.paths[0].backend.service.port",
            14,
            "exactly one of name or number",
        ),
        (
            {"backend": "{service: {name: shop, port: {number: 0}}}"},
            "spec.rules[0].http.paths[0].backend.service.port.number",
            14,
            "out of range",
        ),
        (
            {
                "backend": "{service: {name: shop, port: {number: 80}}, "
                "resource: {kind: Bucket, name: b}}"
            },
            "spec.rules[0].http.paths[0].backend",
            14,
            "exactly one of service or resource",
        ),
        ({"host": "10.0.0.1"}, "spec.rules[0].host", 9, "must be a DNS name"),
        ({"host": "'*'"}, "spec.rules[0].host", 9, "must be a DNS name"),
        ({"secret": "Not_A_Name"}, "spec.tls[0].secretName", 7, "invalid secretName"),
    ],
)
def test_ingress_errors_point_at_the_field(
    over: dict[str, str], field: str, line: int, message: str
) -> None:
    errors = _errors(_ingress(**over))
    assert field in errors, errors
    assert errors[field].startswith(f"{line}: ")
    assert message in errors[field]
    # The tls host is always wrong in this document, and reported at its own line.
    assert errors["spec.tls[0].hosts[0]"].startswith("6: ")


def test_a_wildcard_host_is_fine_and_an_empty_ingress_is_not() -> None:
    assert _errors(_ingress(host="'*.example.com'")).keys() == {"spec.tls[0].hosts[0]"}
    errors = _errors(
        """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: empty}
        spec: {}
        """
    )
    assert errors == {"spec": "4: an Ingress needs a defaultBackend or at least one rule"}


def test_resource_backends_are_a_warning() -> None:
    result = load_snippet(
        """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: web}
        spec:
          defaultBackend:
            resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: static}
        """
    )
    [warning] = result.diagnostics
    assert not warning.is_error and warning.field == "spec.defaultBackend.resource"


def test_ingress_class_needs_a_controller() -> None:
    errors = _errors(
        """
        apiVersion: networking.k8s.io/v1
        kind: IngressClass
        metadata: {name: c}
        spec: {controller: nodomain}
        """
    )
    assert errors["spec.controller"].startswith("4: controller 'nodomain' must be")


def test_an_unknown_field_is_an_error_at_its_line() -> None:
    errors = _errors(
        """
        apiVersion: networking.k8s.io/v1
        kind: Ingress
        metadata: {name: web}
        spec:
          defaultBackend: {service: {name: a, port: {number: 80}}}
          rulez: []
        """
    )
    [(field, message)] = errors.items()
    assert "rulez" in field and message.startswith("6: ")


# -- SMI ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1alpha2", "v1alpha3", "v1alpha4"])
def test_traffic_split_versions(version: str) -> None:
    result = load_snippet(
        f"""
        apiVersion: split.smi-spec.io/{version}
        kind: TrafficSplit
        metadata: {{name: s}}
        spec:
          service: web
          backends: [{{service: web-v1, weight: 1000}}, {{service: web-v2, weight: 500}}]
        """
    )
    assert result.diagnostics == ()
    [split] = result.resources
    assert isinstance(split.spec, TrafficSplitSpec)
    assert [b.weight for b in split.spec.backends] == [1000, 500]


def test_an_unknown_smi_version_is_refused() -> None:
    result = load_snippet(
        """
        apiVersion: split.smi-spec.io/v1alpha1
        kind: TrafficSplit
        metadata: {name: s}
        spec: {service: web, backends: [{service: a, weight: 1}]}
        """
    )
    assert any(d.is_error and "v1alpha1" in d.message for d in result.diagnostics)


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("{service: web, backends: []}", "spec.backends", "at least one backend"),
        (
            "{service: web, backends: [{service: a, weight: -1}]}",
            "spec.backends[0].weight",
            "must not be negative",
        ),
        (
            "{service: web, backends: [{service: a, weight: 0}]}",
            "spec.backends",
            "every backend has weight 0",
        ),
        (
            "{service: web, backends: [{service: a, weight: 1}, {service: a, weight: 1}]}",
            "spec.backends[1].service",
            "listed twice",
        ),
        (
            "{service: Web_1, backends: [{service: a, weight: 1}]}",
            "spec.service",
            "DNS-1123",
        ),
        (
            "{service: web, matches: [{kind: HTTPRouteGroup, name: g}], "
            "backends: [{service: a, weight: 1}]}",
            "spec.matches",
            "needs split.smi-spec.io/v1alpha3",
        ),
    ],
)
def test_traffic_split_errors(spec: str, field: str, message: str) -> None:
    errors = _errors(
        f"""
        apiVersion: split.smi-spec.io/v1alpha2
        kind: TrafficSplit
        metadata: {{name: s}}
        spec: {spec}
        """
    )
    assert errors[field].startswith("4: ") and message in errors[field], errors


def test_http_route_group_errors() -> None:
    errors = _errors(
        """
        apiVersion: specs.smi-spec.io/v1alpha4
        kind: HTTPRouteGroup
        metadata: {name: g}
        spec:
          matches:
          - name: a
            pathRegex: "/(unclosed"
            methods: ["GET", "G E T"]
          - name: a
            headers: {user-agent: "(?=lookahead)"}
        """
    )
    assert errors["spec.matches[0].pathRegex"].startswith("7: ")
    assert errors["spec.matches[0].methods[1]"].startswith("8: invalid HTTP method")
    assert errors["spec.matches[1].name"].startswith("9: duplicate match name")
    assert "spec.matches[1].headers.user-agent" in errors


def test_tcp_route_versions() -> None:
    ok = load_snippet(
        """
        apiVersion: specs.smi-spec.io/v1alpha4
        kind: TCPRoute
        metadata: {name: t}
        spec: {matches: {ports: [3306]}}
        """
    )
    assert ok.diagnostics == ()
    assert isinstance(ok.resources[0].spec, SMITCPRouteSpec)
    assert ok.resources[0].spec.matches is not None
    assert ok.resources[0].spec.matches.ports == [3306]
    v4 = load_snippet(
        """
        apiVersion: specs.smi-spec.io/v1alpha4
        kind: TCPRoute
        metadata: {name: t}
        spec: {matches: {ports: [3306, 70000]}}
        """
    )
    [error] = v4.diagnostics
    assert error.field == "spec.matches.ports[1]" and "out of range" in error.message
    v3 = _errors(
        """
        apiVersion: specs.smi-spec.io/v1alpha3
        kind: TCPRoute
        metadata: {name: t}
        spec: {matches: {ports: [3306]}}
        """
    )
    assert "needs specs.smi-spec.io/v1alpha4" in v3["spec.matches"]


def test_traffic_target_errors() -> None:
    errors = _errors(
        """
        apiVersion: access.smi-spec.io/v1alpha3
        kind: TrafficTarget
        metadata: {name: t, namespace: shop}
        spec:
          destination: {kind: Pod, name: api, namespace: other}
          rules:
          - {kind: UDPRoute, name: udp}
          - {kind: TCPRoute, name: tcp, matches: [x]}
          sources: []
        """
    )
    assert errors["spec.destination.kind"].startswith("5: unsupported kind 'Pod'")
    assert "TrafficTarget's namespace 'shop'" in errors["spec.destination.namespace"]
    assert errors["spec.rules[0].kind"].startswith("7: unsupported rule kind 'UDPRoute'")
    assert "HTTPRouteGroup rules only" in errors["spec.rules[1].matches"]
    assert "at least one source" in errors["spec.sources"]
