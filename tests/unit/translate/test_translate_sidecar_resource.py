"""The Sidecar resource: which one applies, egress scoping, outbound policy, ingress."""

from __future__ import annotations

from pilotfish.api.loader import load_text
from pilotfish.controlplane.generator import MeshGenerator
from pilotfish.ir import DirectResponseAction, ForwardAction, Listener, RouteConfig, TcpProxy
from pilotfish.model.mesh_config import MeshConfig, OutboundTrafficPolicy
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.sidecar import sidecar_inbound, sidecar_outbound
from pilotfish.translate.sidecar_scope import applied_sidecar, sidecar_scope
from pilotfish.xds.types import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: default}
spec: {clusterIP: 10.96.0.9, selector: {app: db}, ports: [{name: tcp, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: other}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
"""


def _sidecar(name: str, namespace: str, body: str) -> str:
    return (
        f"---\napiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}"
    )


REGISTRY_ONLY = MeshConfig(outbound_traffic_policy=OutboundTrafficPolicy(mode="REGISTRY_ONLY"))


def _snapshot(*docs: str, **kw: object) -> Snapshot:
    result = load_text(SERVICES + "".join(docs), "test.yaml")
    assert result.ok, [d.format() for d in result.diagnostics]
    return build_snapshot(result.resources, 1, **kw)  # type: ignore[arg-type]


def _redirect(labels: dict[str, str] | None = None, namespace: str = "default") -> ProxyView:
    return ProxyView(
        "sidecar",
        namespace,
        labels=tuple(sorted((labels or {}).items())),
        interception="REDIRECT",
        bind_ip="0.0.0.0",
    )


def _explicit(labels: dict[str, str] | None = None) -> ProxyView:
    return ProxyView("sidecar", "default", labels=tuple(sorted((labels or {}).items())))


def _services(snapshot: Snapshot, view: ProxyView) -> set[str]:
    out = sidecar_outbound(snapshot, view)
    return {c.service for c in out.clusters if c.service}


def _route(out_routes: tuple[RouteConfig, ...], name: str) -> RouteConfig:
    return next(r for r in out_routes if r.name == name)


def _listener(listeners: tuple[Listener, ...], name: str) -> Listener:
    return next(x for x in listeners if x.name == name)


NS_DEFAULT = _sidecar("default", "default", '  egress: [{hosts: ["./reviews"]}]\n')
PRODUCTPAGE = _sidecar(
    "pp",
    "default",
    "  workloadSelector: {labels: {app: productpage}}\n"
    '  egress: [{hosts: ["./ratings.default.svc.cluster.local", "other/*"]}]\n',
)
ROOT = _sidecar("default", "istio-system", '  egress: [{hosts: ["*/*"]}]\n')


def test_precedence_selector_then_namespace_then_root() -> None:
    snap = _snapshot(NS_DEFAULT, PRODUCTPAGE, ROOT)
    pp = applied_sidecar(snap, "default", {"app": "productpage"})
    other = applied_sidecar(snap, "default", {"app": "reviews"})
    elsewhere = applied_sidecar(snap, "other", {"app": "web"})
    assert pp is not None and pp.name == "pp"
    assert other is not None and (other.namespace, other.name) == ("default", "default")
    assert elsewhere is not None and elsewhere.namespace == "istio-system"
    assert applied_sidecar(_snapshot(NS_DEFAULT), "other", {}) is None


def test_no_sidecar_sees_every_service() -> None:
    assert _services(_snapshot(), _redirect()) == {
        "reviews.default.svc.cluster.local",
        "ratings.default.svc.cluster.local",
        "db.default.svc.cluster.local",
        "web.other.svc.cluster.local",
    }


def test_egress_hosts_scope_clusters_routes_and_listeners() -> None:
    snap = _snapshot(NS_DEFAULT, PRODUCTPAGE)
    view = _redirect({"app": "reviews"})
    assert _services(snap, view) == {"reviews.default.svc.cluster.local"}
    out = sidecar_outbound(snap, view)
    names = {x.name for x in out.listeners}
    assert "0.0.0.0_5432" not in names and "0.0.0.0_8080" not in names
    vhosts = {vh.name for vh in _route(out.route_configs, "9080").virtual_hosts}
    assert vhosts == {"reviews.default.svc.cluster.local:9080", "allow_any"}
    pp = _redirect({"app": "productpage"})
    assert _services(snap, pp) == {
        "ratings.default.svc.cluster.local",
        "web.other.svc.cluster.local",
    }


def test_namespace_patterns() -> None:
    none = _snapshot(_sidecar("s", "default", '  egress: [{hosts: ["~/*"]}]\n'))
    assert _services(none, _redirect()) == set()
    other = _snapshot(_sidecar("s", "default", '  egress: [{hosts: ["other/*"]}]\n'))
    assert _services(other, _redirect()) == {"web.other.svc.cluster.local"}
    own = _snapshot(_sidecar("s", "default", '  egress: [{hosts: ["./*"]}]\n'))
    assert "web.other.svc.cluster.local" not in _services(own, _redirect())
    assert len(_services(own, _redirect())) == 3
    wrong_ns = _snapshot(_sidecar("s", "default", '  egress: [{hosts: ["other/reviews"]}]\n'))
    assert _services(wrong_ns, _redirect()) == set()


def test_port_specific_egress_listener() -> None:
    snap = _snapshot(
        _sidecar(
            "s",
            "default",
            "  egress:\n"
            '  - {port: {number: 9080, protocol: HTTP, name: http}, hosts: ["./ratings"]}\n'
            '  - {hosts: ["./*"]}\n',
        )
    )
    out = sidecar_outbound(snap, _redirect())
    vhosts = {vh.name for vh in _route(out.route_configs, "9080").virtual_hosts}
    assert vhosts == {"ratings.default.svc.cluster.local:9080", "allow_any"}
    # The catch-all still covers the other ports of the namespace.
    assert "0.0.0.0_5432" in {x.name for x in out.listeners}


def test_virtual_service_destinations_stay_reachable() -> None:
    vs = (
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews, namespace: default}\n"
        "spec: {hosts: [reviews], http: [{route: [{destination: {host: ratings}}]}]}\n"
    )
    snap = _snapshot(NS_DEFAULT, vs)
    assert _services(snap, _redirect()) == {
        "reviews.default.svc.cluster.local",
        "ratings.default.svc.cluster.local",
    }


def test_registry_only_from_mesh_config() -> None:
    snap = _snapshot(mesh=REGISTRY_ONLY)
    out = sidecar_outbound(snap, _redirect())
    block = _route(out.route_configs, "9080").virtual_hosts[-1]
    assert block.name == "block_all" and block.domains == ("*",)
    action = block.routes[0].action
    assert isinstance(action, DirectResponseAction) and action.status == 502
    for name in ("virtualOutbound",):
        chain = _listener(out.listeners, name).default_chain
        assert chain is not None and isinstance(chain.filter, TcpProxy)
        assert chain.filter.cluster == "BlackHoleCluster"
    # Explicit layout: a catch-all answering 502 is added.
    explicit = sidecar_outbound(snap, _explicit())
    last = _route(explicit.route_configs, "http_proxy").virtual_hosts[-1]
    assert last.name == "block_all"


def test_allow_any_keeps_passthrough_and_no_explicit_catch_all() -> None:
    snap = _snapshot()
    out = sidecar_outbound(snap, _redirect())
    allow = _route(out.route_configs, "9080").virtual_hosts[-1]
    assert allow.name == "allow_any"
    assert isinstance(allow.routes[0].action, ForwardAction)
    chain = _listener(out.listeners, "virtualOutbound").default_chain
    assert chain is not None and isinstance(chain.filter, TcpProxy)
    assert chain.filter.cluster == "PassthroughCluster"
    explicit = sidecar_outbound(snap, _explicit())
    domains = [vh.domains for vh in _route(explicit.route_configs, "http_proxy").virtual_hosts]
    assert ("*",) not in domains


def test_sidecar_policy_overrides_mesh_config() -> None:
    strict = _sidecar("s", "default", "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    assert sidecar_scope(_snapshot(strict), _redirect()).outbound_policy == "REGISTRY_ONLY"
    loose = _sidecar("s", "default", "  outboundTrafficPolicy: {mode: ALLOW_ANY}\n")
    snap = _snapshot(loose, mesh=REGISTRY_ONLY)
    assert sidecar_scope(snap, _redirect()).outbound_policy == "ALLOW_ANY"
    # A Sidecar with no egress does not scope.
    assert len(_services(_snapshot(strict), _redirect())) == 4


def test_ingress_replaces_service_ports() -> None:
    sc = _sidecar(
        "s",
        "default",
        "  ingress:\n"
        "  - {port: {number: 7000, protocol: HTTP, name: http}, defaultEndpoint: 127.0.0.1:8080}\n"
        "  - {port: {number: 7001, protocol: TCP, name: tcp}, defaultEndpoint: 0.0.0.0:8081}\n",
    )
    view = ProxyView("sidecar", "default", labels=(("app", "reviews"),), app_address="127.0.0.9")
    inb = sidecar_inbound(_snapshot(sc), view)
    eps = {c.name: [(e.address, e.port) for e in c.endpoints] for c in inb.clusters}
    assert eps == {"inbound|7000||": [("127.0.0.1", 8080)], "inbound|7001||": [("127.0.0.9", 8081)]}
    assert {x.port for x in inb.listeners} == {7000, 7001}
    # Without the Sidecar the Service's port 9080 is served.
    plain = sidecar_inbound(_snapshot(), view)
    assert {x.port for x in plain.listeners} == {9080}


def test_generator_keys_outbound_by_applied_sidecar() -> None:
    gen = MeshGenerator()
    gen.set_snapshot(_snapshot(NS_DEFAULT, PRODUCTPAGE))
    a = gen.generate(_redirect({"app": "reviews", "version": "v1"}))
    before = gen.translations
    b = gen.generate(_redirect({"app": "reviews", "version": "v2"}))
    # Same namespace Sidecar: the outbound and cluster parts are shared.
    assert gen.translations == before + 1  # only the inbound part
    assert a[CLUSTER_TYPE].resources.keys() == b[CLUSTER_TYPE].resources.keys()
    pp = gen.generate(_redirect({"app": "productpage"}))
    assert "outbound|9080||ratings.default.svc.cluster.local" in pp[CLUSTER_TYPE].resources
    assert "outbound|9080||ratings.default.svc.cluster.local" not in a[CLUSTER_TYPE].resources
    assert pp[ROUTE_TYPE].version != a[ROUTE_TYPE].version
    assert pp[LISTENER_TYPE].version != a[LISTENER_TYPE].version


def test_scoping_shrinks_cds() -> None:
    gen = MeshGenerator()
    gen.set_snapshot(_snapshot())
    full = len(gen.generate(_redirect())[CLUSTER_TYPE].resources)
    gen2 = MeshGenerator()
    gen2.set_snapshot(_snapshot(NS_DEFAULT))
    scoped = len(gen2.generate(_redirect())[CLUSTER_TYPE].resources)
    assert scoped == full - 3


def test_validation_errors() -> None:
    bad = _sidecar(
        "s",
        "default",
        "  egress:\n"
        '  - {hosts: ["reviews"]}\n'
        '  - {port: {number: 80, name: http}, hosts: ["./*"]}\n'
        "  ingress:\n"
        "  - {port: {number: 9080, name: http}, defaultEndpoint: 10.0.0.1:80}\n"
        "  - {port: {number: 9080, name: http2}}\n",
    )
    result = load_text(SERVICES + bad, "bad.yaml")
    messages = {d.field: d.message for d in result.diagnostics if d.is_error}
    assert "namespace/dnsName" in messages["spec.egress[0].hosts[0]"]
    assert "must be the last" in messages["spec.egress[0]"]
    assert "defaultEndpoint" in messages["spec.ingress[0].defaultEndpoint"]
    assert "already defined" in messages["spec.ingress[1].port.number"]
    empty = load_text(SERVICES + _sidecar("e", "default", "  {}\n"), "empty.yaml")
    assert any(d.field == "spec" and d.is_error for d in empty.diagnostics)
    unknown = load_text(SERVICES + _sidecar("u", "default", "  egres: []\n"), "u.yaml")
    assert any(d.field == "spec.egres" and d.is_error for d in unknown.diagnostics)
