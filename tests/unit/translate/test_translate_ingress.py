"""Kubernetes Ingress conversion (translate/ingress.py): which Ingresses are
served, the derived Gateway and VirtualServices, path semantics walked through
the gateway's real IR with ``explain``, and the Ingress status."""

from __future__ import annotations

import textwrap

import pytest

from pilotfish.api.loader import load_text
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.resource import ResourceKey
from pilotfish.explain.engine import explain
from pilotfish.explain.request import ExplainRequest
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.derived_resource import DERIVED_FROM

GATEWAY = ProxyView(
    "gateway", "istio-system", labels=(("istio", "ingressgateway"),), bind_ip="127.0.0.1"
)
PRODUCTPAGE = "outbound|9080||productpage.default.svc.cluster.local"
REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
FALLBACK = "outbound|8000||fallback.default.svc.cluster.local"

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: productpage}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http-web, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: fallback}
spec:
  ports: [{name: http, port: 8000}]
"""


def _snapshot(text: str) -> Snapshot:
    result = load_text(SERVICES + "---\n" + textwrap.dedent(text).lstrip("\n"), "ing.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_snapshot(result.resources, 1)


def _ingress(name: str, paths: str, *, meta: str = "", spec: str = "") -> str:
    return f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
{textwrap.indent(textwrap.dedent(meta).strip(), "  ") if meta else ""}
spec:
{textwrap.indent(textwrap.dedent(spec).strip(), "  ") if spec else ""}
  rules:
  - http:
      paths:
{textwrap.indent(textwrap.dedent(paths).strip(), "      ")}
"""


ISTIO_CLASS = "annotations: {kubernetes.io/ingress.class: istio}"
ONE_PATH = """
- path: /
  pathType: Prefix
  backend: {service: {name: productpage, port: {number: 9080}}}
"""


def _derived(snapshot: Snapshot, kind: str) -> list[str]:
    return sorted(r.name for r in snapshot.conversion.resources if r.kind == kind)


def _route(snapshot: Snapshot, url: str) -> str | None:
    """The cluster the gateway routes ``url`` to (None: no route). The services
    have no endpoints, so a routed request ends in 503, not 404."""
    result = explain(snapshot, GATEWAY, ExplainRequest(url, "GET", ()))
    return result.outcome.cluster or None


# -- which Ingresses are served ----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "meta", "spec", "served"),
    [
        ("", ISTIO_CLASS, "", True),
        ("", "annotations: {kubernetes.io/ingress.class: nginx}", "", False),
        # No class at all: Istio's default mesh config (STRICT) does not serve it...
        ("", "", "", False),
        # ...unless the default IngressClass is Istio's (Kubernetes would fill it in).
        (
            """
            apiVersion: networking.k8s.io/v1
            kind: IngressClass
            metadata:
              name: mesh
              annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
            spec: {controller: istio.io/ingress-controller}
            """,
            "",
            "",
            True,
        ),
        (
            """
            apiVersion: networking.k8s.io/v1
            kind: IngressClass
            metadata: {name: pf}
            spec: {controller: pilotfish.io/ingress-controller}
            """,
            "",
            "ingressClassName: pf",
            True,
        ),
        (
            """
            apiVersion: networking.k8s.io/v1
            kind: IngressClass
            metadata: {name: nginx}
            spec: {controller: k8s.io/ingress-nginx}
            """,
            "",
            "ingressClassName: nginx",
            False,
        ),
        # A class name without an IngressClass object: not served (Istio's STRICT).
        ("", "", "ingressClassName: istio", False),
        # The annotation wins over the class name.
        ("", ISTIO_CLASS, "ingressClassName: missing", True),
    ],
)
def test_which_ingresses_are_served(extra: str, meta: str, spec: str, served: bool) -> None:
    docs = _ingress("web", ONE_PATH, meta=meta, spec=spec)
    if extra:
        docs += "---\n" + textwrap.dedent(extra).lstrip("\n")
    snapshot = _snapshot(docs)
    key = ResourceKey("Ingress", "default", "web")
    assert (key in snapshot.conversion.statuses) is served
    assert bool(_derived(snapshot, "Gateway")) is served
    assert (_route(snapshot, "http://any:8080/") == PRODUCTPAGE) is served
    if not served:
        [note] = [d for d in snapshot.conversion.diagnostics if d.name == "web"]
        assert note.severity.value == "info" and "not served" in note.message


# -- derived objects ----------------------------------------------------------------


def test_derived_objects_are_named_as_istio_names_them_and_point_at_their_source() -> None:
    snapshot = _snapshot(_ingress("web", ONE_PATH, meta=ISTIO_CLASS))
    [gateway] = [r for r in snapshot.conversion.resources if r.kind == "Gateway"]
    assert (gateway.namespace, gateway.name) == (
        "istio-system",
        "web-istio-autogenerated-k8s-ingress-default",
    )
    assert isinstance(gateway.spec, GatewaySpec)
    assert gateway.spec.selector == {"istio": "ingressgateway"}
    assert [(s.port.number, s.port.protocol, s.hosts) for s in gateway.spec.servers] == [
        (8080, "HTTP", ["*"])
    ]
    [vs] = [r for r in snapshot.conversion.resources if r.kind == "VirtualService"]
    assert vs.name == "wildcard-web-istio-autogenerated-k8s-ingress"
    assert vs.metadata.annotations[DERIVED_FROM] == "Ingress default/web"
    assert vs.source is not None and vs.source.file == "ing.yaml"
    assert isinstance(vs.spec, VirtualServiceSpec)
    assert vs.spec.gateways == ["istio-system/web-istio-autogenerated-k8s-ingress-default"]
    # The derived objects are in the snapshot like the users' own.
    assert snapshot.gateways["istio-system/web-istio-autogenerated-k8s-ingress-default"]


PATHS = """
- path: /static/
  pathType: Prefix
  backend: {service: {name: reviews, port: {name: http-web}}}
- path: /productpage
  pathType: Exact
  backend: {service: {name: productpage, port: {number: 9080}}}
- path: /api/*
  pathType: ImplementationSpecific
  backend: {service: {name: reviews, port: {number: 9080}}}
- path: /exact-ish
  pathType: ImplementationSpecific
  backend: {service: {name: reviews, port: {number: 9080}}}
- path: /foo
  pathType: Prefix
  backend: {service: {name: productpage, port: {number: 9080}}}
"""


@pytest.mark.parametrize(
    ("path", "cluster"),
    [
        ("/productpage", PRODUCTPAGE),
        ("/productpage/x", FALLBACK),  # Exact is exact
        # Prefix matches path elements: /static/ matches /static and /static/..., not /staticx.
        ("/static", REVIEWS),
        ("/static/app.js", REVIEWS),
        ("/staticx", FALLBACK),
        # ImplementationSpecific as Istio: /api/* is a (path-element) prefix of /api...
        ("/api", REVIEWS),
        ("/api/v1/products", REVIEWS),
        ("/apix", FALLBACK),
        # ... and a path without a wildcard is exact.
        ("/exact-ish", REVIEWS),
        ("/exact-ish/more", FALLBACK),
        # The example: Prefix /foo matches /foo and /foo/bar, not /foobar.
        ("/foo", PRODUCTPAGE),
        ("/foo/bar", PRODUCTPAGE),
        ("/foobar", FALLBACK),
        # Nothing matched: the defaultBackend.
        ("/", FALLBACK),
    ],
)
def test_path_types_through_the_gateway(path: str, cluster: str) -> None:
    spec = "defaultBackend: {service: {name: fallback, port: {number: 8000}}}"
    snapshot = _snapshot(_ingress("web", PATHS, meta=ISTIO_CLASS, spec=spec))
    assert _route(snapshot, f"http://bookinfo.example.com:8080{path}") == cluster


def test_longer_paths_win_and_exact_wins_a_tie_across_ingresses_of_one_host() -> None:
    first = _ingress(
        "a",
        """
        - path: /shop
          pathType: Prefix
          backend: {service: {name: productpage, port: {number: 9080}}}
        """,
        meta=ISTIO_CLASS + "\ncreationTimestamp: '2024-01-01T00:00:00Z'",
    )
    second = _ingress(
        "b",
        """
        - path: /shop
          pathType: Exact
          backend: {service: {name: reviews, port: {number: 9080}}}
        - path: /shop/cart
          pathType: Prefix
          backend: {service: {name: fallback, port: {number: 8000}}}
        """,
        meta=ISTIO_CLASS + "\ncreationTimestamp: '2024-02-01T00:00:00Z'",
    )
    snapshot = _snapshot(first + "---\n" + second)
    # One VirtualService for the host, named after the oldest Ingress, bound to both Gateways.
    [vs] = [r for r in snapshot.conversion.resources if r.kind == "VirtualService"]
    assert vs.name == "wildcard-a-istio-autogenerated-k8s-ingress"
    assert isinstance(vs.spec, VirtualServiceSpec) and len(vs.spec.gateways) == 2
    assert vs.metadata.annotations[DERIVED_FROM] == "Ingress default/a, Ingress default/b"
    assert _route(snapshot, "http://x:8080/shop") == REVIEWS
    assert _route(snapshot, "http://x:8080/shop/cart/1") == FALLBACK
    assert _route(snapshot, "http://x:8080/shop/other") == PRODUCTPAGE


def test_host_rules_get_their_own_virtual_hosts() -> None:
    text = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: hosts
  annotations: {kubernetes.io/ingress.class: istio}
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: reviews, port: {number: 9080}}}}
  - host: "*.example.org"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: fallback, port: {number: 8000}}}}
"""
    snapshot = _snapshot(text)
    assert _derived(snapshot, "VirtualService") == [
        "shop-example-com-hosts-istio-autogenerated-k8s-ingress",
        "wildcard-example-org-hosts-istio-autogenerated-k8s-ingress",
    ]
    assert _route(snapshot, "http://shop.example.com:8080/") == REVIEWS
    assert _route(snapshot, "http://a.example.org:8080/x") == FALLBACK
    assert _route(snapshot, "http://other.example.net:8080/") is None


def test_unknown_named_port_is_reported_and_the_path_left_out() -> None:
    paths = """
    - path: /a
      pathType: Exact
      backend: {service: {name: productpage, port: {name: grpc}}}
    - path: /b
      pathType: Exact
      backend: {service: {name: productpage, port: {name: http}}}
    """
    snapshot = _snapshot(_ingress("web", paths, meta=ISTIO_CLASS))
    [warning] = [d for d in snapshot.conversion.diagnostics if d.severity.value == "warning"]
    assert warning.field == "spec.rules[0].http.paths[0].backend.service.port.name"
    assert warning.source is not None and warning.source.file == "ing.yaml"
    assert "no port named 'grpc'" in warning.message
    assert _route(snapshot, "http://x:8080/a") is None
    assert _route(snapshot, "http://x:8080/b") == PRODUCTPAGE


# -- TLS and status -------------------------------------------------------------------


def test_tls_servers_use_the_secret_from_the_gateway_namespace() -> None:
    spec = """
    tls:
    - hosts: [shop.example.com]
      secretName: shop-cert
    - hosts: [no-secret.example.com]
    """
    snapshot = _snapshot(_ingress("web", ONE_PATH, meta=ISTIO_CLASS, spec=spec))
    [gateway] = [r for r in snapshot.conversion.resources if r.kind == "Gateway"]
    assert isinstance(gateway.spec, GatewaySpec)
    https, http = gateway.spec.servers
    assert (https.port.number, https.port.protocol, https.hosts) == (
        8443,
        "HTTPS",
        ["shop.example.com"],
    )
    assert https.tls is not None
    assert (https.tls.mode, https.tls.credential_name) == ("SIMPLE", "shop-cert")
    assert http.port.number == 8080
    [warning] = [d for d in snapshot.conversion.diagnostics if d.field.startswith("spec.tls")]
    assert warning.field == "spec.tls[0].secretName"
    assert "Secret istio-system/shop-cert not found" in warning.message


def test_a_secret_in_the_ingress_namespace_gets_a_hint() -> None:
    secret = """
apiVersion: v1
kind: Secret
metadata: {name: shop-cert}
type: Opaque
stringData: {note: x}
"""
    spec = "tls: [{hosts: [shop.example.com], secretName: shop-cert}]"
    snapshot = _snapshot(_ingress("web", ONE_PATH, meta=ISTIO_CLASS, spec=spec) + "---" + secret)
    [warning] = [d for d in snapshot.conversion.diagnostics if d.field.startswith("spec.tls")]
    assert "it exists in 'default'" in warning.message


def test_status_lists_the_ingress_gateway_addresses() -> None:
    entry = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  address: 127.0.0.1
  labels: {app: istio-ingressgateway, istio: ingressgateway}
"""
    other = entry.replace("istio: ingressgateway", "istio: egressgateway").replace(
        "127.0.0.1", "10.0.0.9"
    )
    other = other.replace("name: istio-ingressgateway", "name: egress")
    snapshot = _snapshot(
        _ingress("web", ONE_PATH, meta=ISTIO_CLASS) + "---" + entry + "---" + other
    )
    status = snapshot.conversion.statuses[ResourceKey("Ingress", "default", "web")]
    assert status == {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
    bare = _snapshot(_ingress("web", ONE_PATH, meta=ISTIO_CLASS))
    assert bare.conversion.statuses[ResourceKey("Ingress", "default", "web")] == {
        "loadBalancer": {}
    }


def test_a_default_backend_with_an_unknown_port_is_reported_once() -> None:
    text = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations: {kubernetes.io/ingress.class: istio}
spec:
  defaultBackend: {service: {name: fallback, port: {name: nope}}}
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: reviews, port: {number: 9080}}}}
  - host: b.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: reviews, port: {number: 9080}}}}
"""
    snapshot = _snapshot(text)
    warnings = [d for d in snapshot.conversion.diagnostics if d.severity.value == "warning"]
    assert [w.field for w in warnings] == ["spec.defaultBackend.service.port.name"]
    assert _route(snapshot, "http://a.example.com:8080/x") == REVIEWS


# Istio's own conversion test input (pilot/pkg/config/kube/ingress/testdata/simple.yaml):
# (path, pathType, port). Istio's golden orders the routes by these ports.
ISTIO_SIMPLE = (
    ("/path", "ImplementationSpecific", 4200),
    ("/sub/path", "ImplementationSpecific", 4201),
    ("/sub/path/", "ImplementationSpecific", 4202),
    ("/regex1.*", "ImplementationSpecific", 4203),
    ("/regex2*", "ImplementationSpecific", 4204),
    ("/regex3/*", "ImplementationSpecific", 4205),
    ("/sub/path", "Exact", 4206),
    ("/sub/path/", "Exact", 4207),
    ("/sub/path", "Prefix", 4208),
    ("/sub/path/", "Prefix", 4209),
)
ISTIO_SIMPLE_ORDER = [4202, 4207, 4209, 4201, 4206, 4208, 4204, 4203, 4205, 4200]


def test_route_order_and_matches_agree_with_istios_conversion_golden() -> None:
    paths = "\n".join(
        f"- {{path: '{path}', pathType: {kind}, "
        f"backend: {{service: {{name: service1, port: {{number: {port}}}}}}}}}"
        for path, kind, port in ISTIO_SIMPLE
    )
    text = _ingress("foo", paths, meta=ISTIO_CLASS).replace(
        "  - http:", "  - host: foohost.bar.com\n    http:"
    )
    snapshot = _snapshot(text)
    [vs] = [r for r in snapshot.conversion.resources if r.kind == "VirtualService"]
    assert vs.name == "foohost-bar-com-foo-istio-autogenerated-k8s-ingress"  # Istio's name
    assert isinstance(vs.spec, VirtualServiceSpec)
    ports = [r.route[0].destination.port.number for r in vs.spec.http]  # type: ignore[union-attr]
    assert ports == ISTIO_SIMPLE_ORDER
    # Istio's exact /regex2* stays exact; its prefixes are path-separated.
    by_port = {r.route[0].destination.port.number: r.match for r in vs.spec.http}  # type: ignore[union-attr]
    assert [m.uri.exact for m in by_port[4204] if m.uri] == ["/regex2*"]
    assert [(m.uri.exact, m.uri.prefix) for m in by_port[4205] if m.uri] == [
        ("/regex3", None),
        (None, "/regex3/"),
    ]
