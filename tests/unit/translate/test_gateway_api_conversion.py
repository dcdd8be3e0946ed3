"""Gateway API conversion: resources in -> derived Istio objects and statuses out."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.loader import load_text
from pilotfish.api.networking.destination_rule import DestinationRuleSpec
from pilotfish.api.networking.gateway import GatewaySpec as IstioGatewaySpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.model.snapshot import build_snapshot
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.gateway_api import convert_gateway_api
from pilotfish.translate.gateway_api.attachment import intersect_hostnames
from pilotfish.translate.gateway_api.derived import INVALID_BACKEND_HOST
from pilotfish.translate.virtual_hosts import vs_for_mesh
from pki import TestCa

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2, namespace: default}
spec: {selector: {app: web, v: "2"}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: backends}
spec: {selector: {app: api}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {shared: "yes"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
"""

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: shared
    port: 8080
    protocol: HTTP
    hostname: "*.example.com"
    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {shared: "yes"}}}}
  - {name: tcp, port: 9000, protocol: TCP}
"""


def _load(*texts: str) -> tuple[Resource, ...]:
    text = "\n---\n".join(textwrap.dedent(t).strip("\n") for t in texts)
    result = load_text(text, "test.yaml")
    assert [d.format() for d in result.diagnostics if d.is_error] == []
    return result.resources


def _convert(*texts: str) -> Conversion:
    return convert_gateway_api(_load(*texts), ConversionContext())


def _derived(conv: Conversion, kind: str) -> dict[str, Resource]:
    return {f"{r.namespace}/{r.name}": r for r in conv.resources if r.kind == kind}


def _vs(conv: Conversion, name: str) -> VirtualServiceSpec:
    spec = _derived(conv, "VirtualService")[name].spec
    assert isinstance(spec, VirtualServiceSpec)
    return spec


def _route(name: str, body: str, namespace: str = "default", meta: str = "") -> str:
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        f"metadata: {{name: {name}, namespace: {namespace}{meta}}}\nspec:\n"
        + textwrap.indent(textwrap.dedent(body).strip("\n"), "  ")
    )


def _parent(conv: Conversion, kind: str, ns: str, name: str, index: int = 0) -> dict[str, Any]:
    status = conv.statuses[ResourceKey(kind, ns, name)]
    parent: dict[str, Any] = status["parents"][index]
    return parent


def _cond(conditions: list[dict[str, Any]], kind: str) -> tuple[str, str]:
    found = next(c for c in conditions if c["type"] == kind)
    return found["status"], found["reason"]


def test_gateway_becomes_one_istio_gateway_per_listener() -> None:
    conv = _convert(SERVICES, GATEWAY)
    gateways = _derived(conv, "Gateway")
    assert sorted(gateways) == [
        "default/gw-http-gwapi",
        "default/gw-shared-gwapi",
        "default/gw-tcp-gwapi",
    ]
    shared = gateways["default/gw-shared-gwapi"]
    assert isinstance(shared.spec, IstioGatewaySpec)
    assert shared.spec.selector == {"gateway.networking.k8s.io/gateway-name": "gw"}
    server = shared.spec.servers[0]
    assert (server.port.number, server.port.protocol, server.hosts) == (
        8080,
        "HTTP",
        ["*/*.example.com"],
    )
    assert shared.metadata.annotations["internal.pilotfish.io/scope-namespace"] == "default"
    assert shared.metadata.annotations["internal.pilotfish.io/derived-from"] == (
        "KubernetesGateway default/gw"
    )
    assert shared.source is not None and shared.source.line > 0


def test_gateway_status_lists_listeners_and_addresses() -> None:
    entry = """
    apiVersion: networking.istio.io/v1
    kind: WorkloadEntry
    metadata: {name: gw-1, namespace: default}
    spec:
      address: 10.1.0.5
      labels: {gateway.networking.k8s.io/gateway-name: gw}
    """
    conv = _convert(SERVICES, GATEWAY, entry)
    status = conv.statuses[ResourceKey("KubernetesGateway", "default", "gw")]
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.1.0.5"}]
    assert _cond(status["conditions"], "Accepted") == ("True", "Accepted")
    assert _cond(status["conditions"], "Programmed") == ("True", "Programmed")
    http = status["listeners"][0]
    assert http["name"] == "http" and http["attachedRoutes"] == 0
    assert [k["kind"] for k in http["supportedKinds"]] == ["HTTPRoute", "GRPCRoute"]
    assert [k["kind"] for k in status["listeners"][2]["supportedKinds"]] == ["TCPRoute"]
    assert _cond(http["conditions"], "Conflicted") == ("False", "NoConflicts")
    without = _convert(SERVICES, GATEWAY).statuses[
        ResourceKey("KubernetesGateway", "default", "gw")
    ]
    assert _cond(without["conditions"], "Programmed") == ("False", "AddressNotAssigned")


def test_other_controllers_gateways_are_left_alone() -> None:
    other = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: GatewayClass
    metadata: {name: other}
    spec: {controllerName: example.com/other}
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: GatewayClass
    metadata: {name: pf}
    spec: {controllerName: pilotfish.io/gateway-controller}
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: theirs, namespace: default}
    spec:
      gatewayClassName: other
      listeners: [{name: http, port: 80, protocol: HTTP}]
    """
    route = _route(
        "r", "parentRefs: [{name: theirs}]\nrules: [{backendRefs: [{name: web, port: 80}]}]"
    )
    conv = _convert(SERVICES, other, route)
    assert conv.resources == ()
    assert ResourceKey("KubernetesGateway", "default", "theirs") not in conv.statuses
    assert ResourceKey("HTTPRoute", "default", "r") not in conv.statuses
    pf = conv.statuses[ResourceKey("GatewayClass", "default", "pf")]
    assert _cond(pf["conditions"], "Accepted") == ("True", "Accepted")
    assert ResourceKey("GatewayClass", "default", "other") not in conv.statuses


ROUTE_ALL = """
parentRefs: [{name: gw, namespace: default, sectionName: http}]
rules: [{backendRefs: [{name: web, port: 80}]}]
"""


def test_allowed_routes_namespaces() -> None:
    same_ok = _route("r", ROUTE_ALL)
    other_ns = _route("r", ROUTE_ALL, namespace="team-a")
    conv = _convert(SERVICES, GATEWAY, same_ok, other_ns)
    assert _cond(_parent(conv, "HTTPRoute", "default", "r")["conditions"], "Accepted") == (
        "True",
        "Accepted",
    )
    assert _cond(_parent(conv, "HTTPRoute", "team-a", "r")["conditions"], "Accepted") == (
        "False",
        "NotAllowedByListeners",
    )
    shared = (
        "parentRefs: [{name: gw, namespace: default, port: 8080}]\n"
        "hostnames: [a.example.com]\nrules: [{}]"
    )
    conv = _convert(SERVICES, GATEWAY, _route("s", shared, "team-a"), _route("s", shared, "team-b"))
    assert _cond(_parent(conv, "HTTPRoute", "team-a", "s")["conditions"], "Accepted")[0] == "True"
    assert _cond(_parent(conv, "HTTPRoute", "team-b", "s")["conditions"], "Accepted") == (
        "False",
        "NotAllowedByListeners",
    )
    listeners = conv.statuses[ResourceKey("KubernetesGateway", "default", "gw")]["listeners"]
    assert [ls["attachedRoutes"] for ls in listeners] == [0, 1, 0]


def test_parent_ref_section_and_port_must_match() -> None:
    bad_section = _route("a", "parentRefs: [{name: gw, sectionName: nope}]\nrules: [{}]")
    bad_port = _route("b", "parentRefs: [{name: gw, port: 81}]\nrules: [{}]")
    missing = _route("c", "parentRefs: [{name: absent}]\nrules: [{}]")
    tcp_only = _route("d", "parentRefs: [{name: gw, sectionName: tcp}]\nrules: [{}]")
    conv = _convert(SERVICES, GATEWAY, bad_section, bad_port, missing, tcp_only)
    for name, reason in (
        ("a", "NoMatchingParent"),
        ("b", "NoMatchingParent"),
        ("c", "NoMatchingParent"),
        ("d", "NotAllowedByListeners"),
    ):
        got = _cond(_parent(conv, "HTTPRoute", "default", name)["conditions"], "Accepted")
        assert got == ("False", reason), name
    diag = [d for d in conv.diagnostics if d.name == "a"]
    assert diag and diag[0].field == "spec.parentRefs[0]" and "NoMatchingParent" in diag[0].message


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        (None, (), ("*",)),
        ("*.example.com", (), ("*.example.com",)),
        (None, ("a.com",), ("a.com",)),
        ("*.example.com", ("foo.example.com", "bar.other.com"), ("foo.example.com",)),
        ("foo.example.com", ("*.example.com",), ("foo.example.com",)),
        ("*.example.com", ("*.foo.example.com",), ("*.foo.example.com",)),
        ("*.example.com", ("example.com",), ()),
        ("a.com", ("b.com",), ()),
    ],
)
def test_hostname_intersection(
    listener: str | None, route: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert intersect_hostnames(listener, route) == expected


def test_no_matching_hostname_is_not_attached() -> None:
    body = (
        "parentRefs: [{name: gw, namespace: default, sectionName: shared}]\nhostnames: [other.org]"
    )
    route = _route("r", body + "\nrules: [{}]", "team-a")
    conv = _convert(SERVICES, GATEWAY, route)
    assert _cond(_parent(conv, "HTTPRoute", "team-a", "r")["conditions"], "Accepted") == (
        "False",
        "NoMatchingListenerHostname",
    )
    listeners = conv.statuses[ResourceKey("KubernetesGateway", "default", "gw")]["listeners"]
    assert listeners[1]["attachedRoutes"] == 0
    assert not _derived(conv, "VirtualService")


def test_precedence_across_routes_of_one_host() -> None:
    old = _route(
        "old",
        """
        parentRefs: [{name: gw, sectionName: http}]
        hostnames: [shop.com]
        rules:
        - matches: [{path: {type: PathPrefix, value: /}}]
          backendRefs: [{name: web, port: 80}]
        - matches: [{path: {type: PathPrefix, value: /a}, headers: [{name: x, value: "1"}]}]
          backendRefs: [{name: web, port: 80}]
        """,
        meta=", creationTimestamp: '2024-01-01T00:00:00Z'",
    )
    new = _route(
        "new",
        """
        parentRefs: [{name: gw, sectionName: http}]
        hostnames: [shop.com]
        rules:
        - matches: [{path: {type: PathPrefix, value: /}}]
          backendRefs: [{name: web-v2, port: 80}]
        - matches: [{path: {type: Exact, value: /a}}]
          backendRefs: [{name: web-v2, port: 80}]
        - matches: [{path: {type: PathPrefix, value: /a/b}}]
          backendRefs: [{name: web-v2, port: 80}]
        - matches: [{path: {type: PathPrefix, value: /a}, method: GET}]
          backendRefs: [{name: web-v2, port: 80}]
        - matches: [{path: {type: PathPrefix, value: /a}, queryParams: [{name: q, value: "1"}]}]
          backendRefs: [{name: web-v2, port: 80}]
        """,
        meta=", creationTimestamp: '2025-01-01T00:00:00Z'",
    )
    conv = _convert(SERVICES, GATEWAY, new, old)
    spec = _vs(conv, "default/gw-http-shop-com-gwapi")
    assert spec.hosts == ["shop.com"] and spec.gateways == ["default/gw-http-gwapi"]
    assert [r.name for r in spec.http] == [
        "default.new.1.0",  # Exact /a
        "default.new.2.0.exact",  # longest prefix /a/b
        "default.new.2.0.prefix",
        "default.new.3.0.exact",  # /a with a method
        "default.new.3.0.prefix",
        "default.old.1.0.exact",  # /a with a header
        "default.old.1.0.prefix",
        "default.new.4.0.exact",  # /a with a query param
        "default.new.4.0.prefix",
        "default.old.0.0",  # "/" of the older route before the newer one's
        "default.new.0.0",
    ]


def test_path_prefix_is_element_wise_and_rewrites_follow() -> None:
    route = _route(
        "r",
        """
        parentRefs: [{name: gw, sectionName: http}]
        rules:
        - matches: [{path: {type: PathPrefix, value: /foo/}}]
          filters:
          - type: URLRewrite
            urlRewrite:
              hostname: new.host
              path: {type: ReplacePrefixMatch, replacePrefixMatch: /bar}
          backendRefs: [{name: web, port: 80}]
        - matches: [{path: {type: PathPrefix, value: /old}}]
          filters:
          - type: RequestRedirect
            requestRedirect:
              path: {type: ReplacePrefixMatch, replacePrefixMatch: /}
              statusCode: 308
        """,
    )
    spec = _vs(_convert(SERVICES, GATEWAY, route), "default/gw-http-wildcard-gwapi")
    by_name = {r.name: r for r in spec.http}
    exact, prefix = by_name["default.r.0.0.exact"], by_name["default.r.0.0.prefix"]
    assert exact.match[0].uri is not None and exact.match[0].uri.exact == "/foo"
    assert prefix.match[0].uri is not None and prefix.match[0].uri.prefix == "/foo/"
    assert exact.rewrite is not None and exact.rewrite.uri == "/bar"
    assert prefix.rewrite is not None and prefix.rewrite.uri == "%PREFIX()%/bar/"
    assert prefix.rewrite.authority == "new.host"
    redirect = by_name["default.r.1.0.prefix"].redirect
    assert redirect is not None and redirect.uri == "%PREFIX()%/" and redirect.redirect_code == 308
    redirect_exact = by_name["default.r.1.0.exact"].redirect
    assert redirect_exact is not None and redirect_exact.uri == "/"
    # No scheme and no port: the listener's port (Istio's FROM_REQUEST_PORT).
    assert redirect.derive_port == "FROM_REQUEST_PORT" and redirect.port is None


def test_cors_filter() -> None:
    route = _route(
        "r",
        """
        parentRefs: [{name: gw, sectionName: http}]
        rules:
        - filters:
          - type: CORS
            cors:
              allowOrigins: ["https://app.example.com", "https://*.example.org"]
              allowMethods: [GET, POST]
              allowCredentials: true
              maxAge: 60
          backendRefs: [{name: web, port: 80}]
        """,
    )
    rule = _vs(_convert(SERVICES, GATEWAY, route), "default/gw-http-wildcard-gwapi").http[0]
    cors = rule.cors_policy
    assert cors is not None
    assert [(o.exact, o.regex) for o in cors.allow_origins] == [
        ("https://app.example.com", None),
        (None, r"https://.*\.example\.org"),
    ]
    assert (cors.allow_methods, cors.allow_credentials, cors.max_age) == (
        ["GET", "POST"],
        True,
        "60s",
    )
    # A preflight from an origin not allowed is answered by the gateway, not forwarded.
    assert cors.unmatched_preflights == "IGNORE"


ISOLATED = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: iso, namespace: default}
spec:
  gatewayClassName: istio
  listeners:
  - {name: any, port: 80, protocol: HTTP}
  - {name: wild, port: 80, protocol: HTTP, hostname: "*.example.com"}
  - {name: abc, port: 80, protocol: HTTP, hostname: abc.example.com}
  - {name: other-port, port: 8080, protocol: HTTP, hostname: "*.example.com"}
"""


def _isolated_route(name: str, section: str) -> str:
    body = f"""
    parentRefs: [{{name: iso, sectionName: {section}}}]
    hostnames: [bar.com, "*.example.com", abc.example.com]
    rules: [{{backendRefs: [{{name: web, port: 80}}]}}]
    """
    return _route(name, body)


def test_listeners_are_isolated_by_hostname() -> None:
    """A hostname a more specific listener of the same port takes is not served
    on a less specific one (the route stays Accepted there)."""
    conv = _convert(
        SERVICES,
        ISOLATED,
        *(_isolated_route(f"r-{s}", s) for s in ("any", "wild", "abc", "other-port")),
    )
    hosts = {
        name: spec.hosts
        for name, r in _derived(conv, "VirtualService").items()
        if isinstance(spec := r.spec, VirtualServiceSpec)
    }
    assert hosts == {
        "default/iso-any-bar-com-gwapi": ["bar.com"],
        "default/iso-wild-wildcard-example-com-gwapi": ["*.example.com"],
        "default/iso-abc-abc-example-com-gwapi": ["abc.example.com"],
        # Another port: the listeners of port 80 do not take its hosts.
        "default/iso-other-port-wildcard-example-com-gwapi": ["*.example.com"],
        "default/iso-other-port-abc-example-com-gwapi": ["abc.example.com"],
    }
    for section in ("any", "wild", "abc"):
        accepted = _parent(conv, "HTTPRoute", "default", f"r-{section}")["conditions"]
        assert _cond(accepted, "Accepted") == ("True", "Accepted")


def test_backends_weights_and_invalid_shares() -> None:
    route = _route(
        "r",
        """
        parentRefs: [{name: gw, sectionName: http}]
        rules:
        - backendRefs:
          - {name: web, port: 80, weight: 3}
          - {name: nope, port: 80, weight: 1}
          - {name: web-v2, port: 80, weight: 0}
        - matches: [{path: {value: /zero}}]
          backendRefs: [{name: web, port: 80, weight: 0}]
        - matches: [{path: {value: /none}}]
        """,
    )
    conv = _convert(SERVICES, GATEWAY, route)
    spec = _vs(conv, "default/gw-http-wildcard-gwapi")
    by_name = {r.name: r for r in spec.http}
    split = by_name["default.r.0.0"]
    assert [(d.destination.host, d.weight) for d in split.route] == [
        ("web.default.svc.cluster.local", 3),
        (INVALID_BACKEND_HOST, 1),
    ]
    for name in ("default.r.1.0.exact", "default.r.2.0.exact"):
        direct = by_name[name].direct_response
        assert direct is not None and direct.status == 500
    parent = _parent(conv, "HTTPRoute", "default", "r")
    assert _cond(parent["conditions"], "ResolvedRefs") == ("False", "BackendNotFound")
    assert _cond(parent["conditions"], "Accepted") == ("True", "Accepted")
    assert parent["controllerName"] == "istio.io/gateway-controller"
    assert parent["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "default",
        "name": "gw",
        "sectionName": "http",
    }
    diag = [d for d in conv.diagnostics if "BackendNotFound" in d.message]
    assert diag and diag[0].field == "spec.rules[0].backendRefs[1]" and not diag[0].is_error


GRANT = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: allow-default, namespace: backends}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
  to: [{group: "", kind: Service, name: api}]
"""


def test_reference_grants_for_backends() -> None:
    cross = _route(
        "r",
        "parentRefs: [{name: gw, sectionName: http}]\n"
        "rules: [{backendRefs: [{name: api, namespace: backends, port: 8080}]}]",
    )
    kind = _route(
        "k",
        "parentRefs: [{name: gw, sectionName: http}]\n"
        "rules: [{backendRefs: [{group: example.com, kind: Bucket, name: b}]}]",
    )
    refused = _convert(SERVICES, GATEWAY, cross, kind)
    parent = _parent(refused, "HTTPRoute", "default", "r")
    assert _cond(parent["conditions"], "ResolvedRefs") == ("False", "RefNotPermitted")
    assert _cond(_parent(refused, "HTTPRoute", "default", "k")["conditions"], "ResolvedRefs") == (
        "False",
        "InvalidKind",
    )
    hosts = [
        d.destination.host
        for r in _vs(refused, "default/gw-http-wildcard-gwapi").http
        for d in r.route
    ]
    assert "api.backends.svc.cluster.local" not in hosts
    allowed = _convert(SERVICES, GATEWAY, cross, GRANT)
    assert _cond(_parent(allowed, "HTTPRoute", "default", "r")["conditions"], "ResolvedRefs") == (
        "True",
        "ResolvedRefs",
    )
    rule = _vs(allowed, "default/gw-http-wildcard-gwapi").http[0]
    assert rule.route[0].destination.host == "api.backends.svc.cluster.local"


def _tls_gateway(ref: str) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: secure, namespace: default}}
spec:
  gatewayClassName: istio
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    hostname: shop.example.com
    tls: {{certificateRefs: [{ref}]}}
"""


SECRET = """
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: certs}
type: Opaque
stringData: {note: the converter only checks that the Secret exists}
"""

CERT_GRANT = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: certs, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: default}]
  to: [{group: "", kind: Secret}]
"""


@pytest.mark.parametrize(
    ("texts", "resolved"),
    [
        ((_tls_gateway("{name: absent}"),), ("False", "InvalidCertificateRef")),
        ((_tls_gateway("{name: cert, namespace: certs}"), SECRET), ("False", "RefNotPermitted")),
        (
            (_tls_gateway("{name: cert, namespace: certs}"), SECRET, CERT_GRANT),
            ("True", "ResolvedRefs"),
        ),
    ],
)
def test_listener_certificates(texts: tuple[str, ...], resolved: tuple[str, str]) -> None:
    conv = _convert(*texts)
    listener = conv.statuses[ResourceKey("KubernetesGateway", "default", "secure")]["listeners"][0]
    assert _cond(listener["conditions"], "ResolvedRefs") == resolved
    gateways = _derived(conv, "Gateway")
    if resolved[0] == "True":
        spec = gateways["default/secure-https-gwapi"].spec
        assert isinstance(spec, IstioGatewaySpec)
        tls = spec.servers[0].tls
        # Copied into the Gateway's namespace: proxies only get their own namespace's.
        assert tls is not None and (tls.mode, tls.credential_name) == ("SIMPLE", "certs-cert-gwapi")
        copy = _derived(conv, "Secret")["default/certs-cert-gwapi"]
        assert copy.spec == next(r for r in _load(SECRET) if r.kind == "Secret").spec
    else:
        assert gateways == {}
        found = [d for d in conv.diagnostics if d.name == "secure"]
        assert [(d.kind, d.field) for d in found] == [
            ("Gateway", "spec.listeners[0].tls.certificateRefs")
        ]
        assert found[0].message.startswith(resolved[1])


def test_listener_with_unresolved_certificate_still_counts_its_routes() -> None:
    # Upstream's GatewayWithAttachedRoutes: attachedRoutes is set whatever the
    # listener's own state; the listener serves nothing.
    route = _route(
        "r", "parentRefs: [{name: secure, sectionName: https}]\nrules: [{backendRefs: []}]"
    )
    conv = _convert(SERVICES, _tls_gateway("{name: absent}"), route)
    listener = conv.statuses[ResourceKey("KubernetesGateway", "default", "secure")]["listeners"][0]
    assert listener["attachedRoutes"] == 1
    assert _cond(listener["conditions"], "Programmed") == ("False", "Invalid")
    assert not _derived(conv, "VirtualService")


def test_conflicting_listeners() -> None:
    gw = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: c, namespace: default}
    spec:
      gatewayClassName: istio
      listeners:
      - {name: a, port: 80, protocol: HTTP}
      - {name: b, port: 80, protocol: TCP}
    """
    conv = _convert(gw)
    listeners = conv.statuses[ResourceKey("KubernetesGateway", "default", "c")]["listeners"]
    for ls in listeners:
        assert _cond(ls["conditions"], "Conflicted") == ("True", "ProtocolConflict")
    assert {d.field for d in conv.diagnostics} == {"spec.listeners[0]", "spec.listeners[1]"}
    assert _derived(conv, "Gateway") == {}


def test_tls_terminate_listeners_decrypt_for_tls_and_tcp_routes() -> None:
    gw = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: Gateway
    metadata: {name: t, namespace: default}
    spec:
      gatewayClassName: istio
      listeners:
      - name: a
        port: 8443
        protocol: TLS
        hostname: tls.example.com
        tls: {mode: Terminate, certificateRefs: [{name: c}]}
    ---
    apiVersion: v1
    kind: Secret
    metadata: {name: c, namespace: default}
    stringData: {note: the converter only checks that the Secret exists}
    ---
    apiVersion: gateway.networking.k8s.io/v1
    kind: TLSRoute
    metadata: {name: r, namespace: default}
    spec:
      parentRefs: [{name: t}]
      hostnames: [tls.example.com]
      rules: [{backendRefs: [{name: web, port: 80}]}]
    """
    conv = _convert(SERVICES, gw)
    ls = conv.statuses[ResourceKey("KubernetesGateway", "default", "t")]["listeners"][0]
    assert _cond(ls["conditions"], "Accepted") == ("True", "Accepted")
    assert _cond(ls["conditions"], "Programmed") == ("True", "Programmed")
    assert [k["kind"] for k in ls["supportedKinds"]] == ["TLSRoute", "TCPRoute"]
    assert ls["attachedRoutes"] == 1
    istio = _derived(conv, "Gateway")["default/t-a-gwapi"].spec
    assert isinstance(istio, IstioGatewaySpec)
    (server,) = istio.servers
    assert server.port.protocol == "TLS" and server.hosts == ["*/tls.example.com"]
    assert server.tls is not None
    assert (server.tls.mode, server.tls.credential_name) == ("SIMPLE", "c")
    (vs,) = _derived(conv, "VirtualService").values()
    assert isinstance(vs.spec, VirtualServiceSpec)
    assert vs.spec.gateways == ["default/t-a-gwapi"]
    assert vs.spec.tls[0].match[0].sni_hosts == ["tls.example.com"]
    assert not conv.diagnostics


def test_grpc_tcp_and_tls_routes() -> None:
    grpc = """
    apiVersion: gateway.networking.k8s.io/v1
    kind: GRPCRoute
    metadata: {name: g, namespace: default}
    spec:
      parentRefs: [{name: gw, sectionName: http}]
      rules:
      - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
        backendRefs: [{name: web, port: 80}]
      - matches: [{method: {service: helloworld.Greeter}}]
        backendRefs: [{name: web, port: 80}]
      - matches: [{method: {method: Ping}}]
        backendRefs: [{name: web, port: 80}]
    """
    tcp = """
    apiVersion: gateway.networking.k8s.io/v1alpha2
    kind: TCPRoute
    metadata: {name: t, namespace: default}
    spec:
      parentRefs: [{name: gw, sectionName: tcp}]
      rules:
      - backendRefs:
        - {name: web, port: 80, weight: 80}
        - {name: web-v2, port: 80, weight: 20}
    """
    conv = _convert(SERVICES, GATEWAY, grpc, tcp)
    http = _vs(conv, "default/gw-http-wildcard-gwapi").http
    uris = [r.match[0].uri for r in http]
    assert [(u.exact, u.prefix, u.regex) for u in uris if u is not None] == [
        ("/helloworld.Greeter/SayHello", None, None),
        (None, "/helloworld.Greeter/", None),
        (None, None, "/[^/]+/Ping"),
    ]
    l4 = _vs(conv, "default/t-gw-tcp-gwapi")
    assert l4.gateways == ["default/gw-tcp-gwapi"]
    assert [(d.destination.host, d.weight) for d in l4.tcp[0].route] == [
        ("web.default.svc.cluster.local", 80),
        ("web-v2.default.svc.cluster.local", 20),
    ]


MESH_PRODUCER = _route(
    "producer",
    "parentRefs: [{group: '', kind: Service, name: web, port: 80}]\n"
    "rules: [{backendRefs: [{name: web-v2, port: 80}]}]",
)
MESH_CONSUMER = _route(
    "consumer",
    "parentRefs: [{group: '', kind: Service, name: web, namespace: default}]\n"
    "rules: [{backendRefs: [{name: web, namespace: default, port: 80}]}]",
    namespace="team-a",
)


def test_mesh_routes_producer_and_consumer() -> None:
    conv = _convert(SERVICES, MESH_PRODUCER, MESH_CONSUMER)
    producer = _vs(conv, "default/web-default-mesh-gwapi")
    assert producer.hosts == ["web.default.svc.cluster.local"]
    assert producer.gateways == ["mesh"] and producer.export_to == ["*"]
    assert producer.http[0].match[0].port == 80
    consumer = _vs(conv, "team-a/web-default-mesh-gwapi")
    assert consumer.export_to == ["."]
    assert _cond(_parent(conv, "HTTPRoute", "team-a", "consumer")["conditions"], "Accepted") == (
        "True",
        "Accepted",
    )
    # A mesh route reaches another namespace's Service without a ReferenceGrant
    # (GEP-1294; upstream's MeshConsumerRoute).
    conditions = _parent(conv, "HTTPRoute", "team-a", "consumer")["conditions"]
    assert _cond(conditions, "ResolvedRefs") == ("True", "ResolvedRefs")
    route = consumer.http[0].route
    assert route is not None and route[0].destination.host == "web.default.svc.cluster.local"


def test_consumer_route_overrides_producer_route_in_its_namespace() -> None:
    snapshot = build_snapshot(_load(SERVICES, MESH_PRODUCER, MESH_CONSUMER), 1)
    host = "web.default.svc.cluster.local"
    assert vs_for_mesh(snapshot, "team-a")[host].key == ResourceKey(
        "VirtualService", "team-a", "web-default-mesh-gwapi"
    )
    assert vs_for_mesh(snapshot, "team-b")[host].key == ResourceKey(
        "VirtualService", "default", "web-default-mesh-gwapi"
    )


def test_snapshot_serves_statuses_and_derived_objects() -> None:
    route = _route("r", ROUTE_ALL)
    snapshot = build_snapshot(_load(SERVICES, GATEWAY, route), 1)
    assert ResourceKey("HTTPRoute", "default", "r") in snapshot.conversion.statuses
    assert any(r.name == "gw-http-wildcard-gwapi" for r in snapshot.of_kind("VirtualService"))


BACKEND_TLS = """
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: web-tls, namespace: default}
spec:
  targetRefs: [{group: "", kind: Service, name: web}]
  validation:
    caCertificateRefs: [{group: "", kind: ConfigMap, name: web-ca}]
    hostname: web.example.com
"""

CA_CONFIG_MAP = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-ca, namespace: default}}
data: {{ca.crt: {json.dumps(TestCa().ca_pem)}}}
"""


def test_backend_tls_policy_with_a_config_map_ca() -> None:
    route = _route("r", ROUTE_ALL)
    conv = _convert(SERVICES, GATEWAY, route, BACKEND_TLS, CA_CONFIG_MAP)
    rule = _derived(conv, "DestinationRule")["default/web-backendtlspolicy-gwapi"]
    assert isinstance(rule.spec, DestinationRuleSpec)
    assert rule.spec.host == "web.default.svc.cluster.local" and rule.spec.export_to == ["*"]
    assert rule.spec.traffic_policy is not None
    tls = rule.spec.traffic_policy.tls
    assert tls is not None
    assert (tls.mode, tls.sni, tls.subject_alt_names) == (
        "SIMPLE",
        "web.example.com",
        ["web.example.com"],
    )
    assert tls.credential_name == "default/web-tls-web-ca-ca-gwapi"  # qualified: any gateway
    secret = _derived(conv, "Secret")[tls.credential_name]
    assert isinstance(secret.spec, SecretSpec)
    assert secret.spec.decoded()["ca.crt"].startswith(b"-----BEGIN CERTIFICATE-----")
    status = conv.statuses[ResourceKey("BackendTLSPolicy", "default", "web-tls")]
    ancestor = status["ancestors"][0]
    assert ancestor["ancestorRef"]["name"] == "gw"
    assert _cond(ancestor["conditions"], "Accepted") == ("True", "Accepted")
    assert _cond(ancestor["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")


def test_backend_tls_policy_without_its_ca_fails_closed() -> None:
    conv = _convert(SERVICES, BACKEND_TLS)
    assert _derived(conv, "DestinationRule") == {}
    status = conv.statuses[ResourceKey("BackendTLSPolicy", "default", "web-tls")]
    conds = status["ancestors"][0]["conditions"]
    assert _cond(conds, "ResolvedRefs") == ("False", "InvalidCACertificateRef")
    assert any("InvalidCACertificateRef" in d.message for d in conv.diagnostics)


def test_hostnames_that_sanitise_alike_get_distinct_virtual_services() -> None:
    body = "parentRefs: [{name: gw, sectionName: http}]\nhostnames: [%s]\nrules: [{}]"
    conv = _convert(SERVICES, GATEWAY, _route("a", body % "a.b"), _route("b", body % "a-b"))
    services = [r for r in conv.resources if r.kind == "VirtualService"]
    assert len({r.key for r in services}) == 2
    assert sorted(r.spec.hosts[0] for r in services) == ["a-b", "a.b"]  # type: ignore[attr-defined]


def test_unchanged_inputs_reuse_the_previous_conversion() -> None:
    resources = _load(SERVICES, GATEWAY, _route("r", ROUTE_ALL))
    ctx = ConversionContext()
    first = convert_gateway_api(resources, ctx)
    unrelated = _load("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}")
    assert convert_gateway_api((*resources, *unrelated), ctx) is first
    # Equal inputs give an equal result; a changed input converts again.
    again = convert_gateway_api(_load(SERVICES, GATEWAY, _route("r", ROUTE_ALL)), ctx)
    assert again == first
    fewer = tuple(r for r in resources if r.name != "web-v2")
    assert convert_gateway_api(fewer, ctx) is not first


def _rule_of(conv: Conversion) -> Any:
    return _vs(conv, "default/gw-http-wildcard-gwapi").http[0]


@pytest.mark.parametrize(
    ("backend_filter", "check"),
    [
        (
            "{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /new}}}",  # noqa: E501
            lambda rule: rule.rewrite is not None and rule.rewrite.uri == "/new",
        ),
        (
            "{type: RequestRedirect, requestRedirect: {hostname: example.org}}",
            lambda rule: rule.redirect is not None and rule.redirect.authority == "example.org",
        ),
    ],
)
def test_a_lone_backend_s_rewrite_or_redirect_applies_to_its_rule(
    backend_filter: str, check: Any
) -> None:
    route = _route(
        "r",
        f"""
        parentRefs: [{{name: gw, sectionName: http}}]
        rules:
        - backendRefs: [{{name: web, port: 80, filters: [{backend_filter}]}}]
        """,
    )
    assert check(_rule_of(_convert(SERVICES, GATEWAY, route)))


def test_a_backend_rewrite_among_several_backends_fails_the_rule() -> None:
    rewrite = "{type: URLRewrite, urlRewrite: {hostname: other.example}}"
    route = _route(
        "r",
        f"""
        parentRefs: [{{name: gw, sectionName: http}}]
        rules:
        - backendRefs:
          - {{name: web, port: 80, filters: [{rewrite}]}}
          - {{name: web-v2, port: 80}}
        """,
    )
    rule = _rule_of(_convert(SERVICES, GATEWAY, route))
    assert rule.direct_response is not None and rule.direct_response.status == 500


def test_retry_becomes_the_route_s_retries() -> None:
    route = _route(
        "r",
        """
        parentRefs: [{name: gw, sectionName: http}]
        rules:
        - retry: {codes: [500, 502], attempts: 3, backoff: 100ms}
          timeouts: {backendRequest: 200ms}
          backendRefs: [{name: web, port: 80}]
        """,
    )
    rule = _rule_of(_convert(SERVICES, GATEWAY, route))
    assert rule.retries is not None
    assert (rule.retries.attempts, rule.retries.retry_on) == (
        3,
        "connect-failure,refused-stream,reset,500,502",
    )
    assert (rule.retries.per_try_timeout, rule.retries.backoff) == ("200ms", "100ms")
    # Only a request timeout bounds the retried request as a whole.
    assert rule.timeout is None
