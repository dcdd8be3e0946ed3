"""AuthorizationPolicy on TCP ports: Istio's handling of HTTP-only fields, the
policies on inbound TCP proxies (both interception layouts) and gateway
passthrough chains, and the network RBAC filters built from them."""

from __future__ import annotations

from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from pilotfish import ir
from pilotfish.api.loader import load_text
from pilotfish.ir.security import AuthzMatch, AuthzPolicy, AuthzRule
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.gateway import gateway_listeners
from pilotfish.translate.security.authz import authz_policies
from pilotfish.translate.sidecar import sidecar_inbound
from pilotfish.xds.build.listeners import build_filter_chain

REVIEWS = {"app": "reviews"}

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: tcp-echo, port: 9000}]
"""


def snapshot(text: str) -> Snapshot:
    result = load_text(text, "inline.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_snapshot(result.resources, 1)


def policy(name: str, action: str, rules: str, ns: str = "default") -> str:
    return f"""
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  action: {action}
  rules:
{rules}
"""


def tcp_rules(text: str, port: int = 9000) -> dict[str, tuple[AuthzRule, ...]]:
    snap = snapshot(text)
    return {p.name: p.rules for p in authz_policies(snap, "default", REVIEWS, port, tcp=True)}


def http_rules(text: str, port: int = 9000) -> dict[str, tuple[AuthzRule, ...]]:
    snap = snapshot(text)
    return {p.name: p.rules for p in authz_policies(snap, "default", REVIEWS, port)}


# -- HTTP-only fields ------------------------------------------------------------------------


def test_allow_rule_with_an_http_only_field_is_dropped_on_tcp_only() -> None:
    text = policy(
        "a",
        "ALLOW",
        "  - to: [{operation: {methods: [GET], ports: ['9000']}}]\n"
        "  - from: [{source: {requestPrincipals: ['*']}}]\n"
        "  - to: [{operation: {hosts: [x.example.com]}}]\n"
        "  - when: [{key: 'request.headers[x-user]', values: [bob]}]\n"
        "  - from: [{source: {principals: [cluster.local/ns/default/sa/ratings]}}]",
    )
    # The policy keeps its place (an ALLOW policy still applies) with only the TCP rule.
    assert tcp_rules(text) == {
        "default/a": (
            AuthzRule(
                sources=(
                    (AuthzMatch("source.principal", ("cluster.local/ns/default/sa/ratings",)),),
                )
            ),
        )
    }
    # On an HTTP port every rule is kept.
    assert len(http_rules(text)["default/a"]) == 5


def test_allow_rule_is_dropped_even_when_the_http_field_is_for_another_port() -> None:
    # Istio rejects the whole rule, whatever port its HTTP-only operation names.
    text = policy(
        "a",
        "ALLOW",
        "  - to: [{operation: {paths: [/health], ports: ['9080']}},"
        " {operation: {ports: ['9000']}}]",
    )
    assert tcp_rules(text) == {"default/a": ()}
    assert http_rules(text) == {"default/a": (AuthzRule(),)}


def test_allow_with_only_http_rules_matches_nothing_on_tcp() -> None:
    text = policy("a", "ALLOW", "  - to: [{operation: {paths: [/x]}}]")
    assert tcp_rules(text) == {"default/a": ()}


def test_deny_rule_leaves_http_only_fields_out() -> None:
    text = policy(
        "d",
        "DENY",
        # Only `methods`: the rule matches every connection.
        "  - to: [{operation: {methods: [POST]}}]\n"
        # HTTP fields next to TCP ones: the TCP ones stay.
        "  - from: [{source: {notNamespaces: [default], requestPrincipals: ['*']}}]\n"
        "    to: [{operation: {ports: ['9000'], notPaths: [/ok]}}]\n"
        "    when:\n"
        "    - {key: 'request.headers[x-debug]', values: ['1']}\n"
        "    - {key: 'request.auth.claims[iss]', values: [me]}\n"
        "    - {key: source.ip, values: [10.9.0.0/16]}\n"
        # A source set left empty makes the whole OR of sources match anything.
        "  - from: [{source: {requestPrincipals: ['*']}}, {source: {ipBlocks: [10.1.0.0/16]}}]\n"
        "    to: [{operation: {ports: ['9000']}}]",
    )
    assert tcp_rules(text) == {
        "default/d": (
            AuthzRule(),
            AuthzRule(
                sources=((AuthzMatch("source.namespace", ("default",), negate=True),),),
                conditions=(AuthzMatch("source.ip", ("10.9.0.0/16",)),),
            ),
            AuthzRule(),
        )
    }


def test_audit_rule_leaves_http_only_fields_out() -> None:
    text = policy(
        "log",
        "AUDIT",
        "  - from: [{source: {ipBlocks: [10.7.0.0/16], requestPrincipals: ['*']}}]\n"
        "    to: [{operation: {paths: ['/admin*']}}]",
    )
    assert tcp_rules(text) == {
        "default/log": (AuthzRule(sources=((AuthzMatch("source.ip", ("10.7.0.0/16",)),),)),)
    }


def test_connection_fields_apply_on_tcp() -> None:
    text = policy(
        "a",
        "ALLOW",
        "  - from: [{source: {namespaces: [prod], ipBlocks: [10.0.0.0/8],"
        " remoteIpBlocks: [192.0.2.0/24], notPrincipals: ['*/sa/bad']}}]\n"
        "    to: [{operation: {ports: ['9000']}}]\n"
        "    when:\n"
        "    - {key: connection.sni, values: [reviews.example.com]}\n"
        "    - {key: destination.ip, values: [10.0.0.11]}\n"
        "    - {key: destination.port, values: ['9000']}\n"
        "  - to: [{operation: {ports: ['9001']}}]",
    )
    (rule,) = tcp_rules(text)["default/a"]  # the 9001 rule cannot match port 9000
    assert rule.sources == (
        (
            AuthzMatch("source.principal", ("*/sa/bad",), negate=True),
            AuthzMatch("source.namespace", ("prod",)),
            AuthzMatch("source.ip", ("10.0.0.0/8",)),
            AuthzMatch("remote.ip", ("192.0.2.0/24",)),
        ),
    )
    assert rule.conditions == (
        AuthzMatch("connection.sni", ("reviews.example.com",)),
        AuthzMatch("destination.ip", ("10.0.0.11",)),
    )


# -- where the policies go ------------------------------------------------------------------


def _tcp_proxy(chain: ir.FilterChain | None) -> ir.TcpProxy:
    assert chain is not None and isinstance(chain.filter, ir.TcpProxy)
    return chain.filter


def test_inbound_tcp_chains_carry_the_policies_in_both_layouts() -> None:
    snap = snapshot(SERVICE + policy("d", "DENY", "  - from: [{source: {ipBlocks: [10.0.0.0/8]}}]"))
    labels = tuple(REVIEWS.items())
    explicit = sidecar_inbound(snap, ProxyView("sidecar", "default", labels=labels))
    by_port = {lst.port: lst for lst in explicit.listeners}
    (denied,) = _tcp_proxy(by_port[9000].default_chain).authz
    assert (denied.name, denied.action) == ("default/d", "DENY")

    view = ProxyView(
        "sidecar", "default", labels=labels, interception="REDIRECT", bind_ip="0.0.0.0"
    )
    (inbound,) = sidecar_inbound(snap, view).listeners
    chains = {c.name: c for c in inbound.filter_chains}
    assert _tcp_proxy(chains["inbound|9000||"]).authz == (denied,)
    # A workload no policy selects keeps a plain TCP proxy.
    other = sidecar_inbound(snapshot(SERVICE), ProxyView("sidecar", "default", labels=labels))
    assert all(
        _tcp_proxy(lst.default_chain).authz == () for lst in other.listeners if lst.port == 9000
    )


def test_mtls_chains_of_a_tcp_port_keep_the_policies() -> None:
    snap = snapshot(SERVICE + policy("a", "ALLOW", "  - from: [{source: {namespaces: [prod]}}]"))
    view = ProxyView("sidecar", "default", labels=tuple(REVIEWS.items()), workload_certs=True)
    by_port = {lst.port: lst for lst in sidecar_inbound(snap, view).listeners}
    chains = by_port[9000].filter_chains
    assert {c.match.transport_protocol for c in chains if c.match} == {"tls", "raw_buffer"}
    assert all([p.name for p in _tcp_proxy(c).authz] == ["default/a"] for c in chains)


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: [vault.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault, namespace: default}
spec:
  hosts: [vault.example.com]
  gateways: [istio-system/ingress]
  tls:
  - match: [{sniHosts: [vault.example.com]}]
    route: [{destination: {host: vault.default.svc.cluster.local, port: {number: 8443}}}]
"""


def test_gateway_passthrough_chains_carry_the_gateway_policies() -> None:
    rules = (
        "  - from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]\n"
        "  - to: [{operation: {hosts: [a]}}]"
    )
    snap = snapshot(GATEWAY + policy("gw", "ALLOW", rules, ns="istio-system"))
    view = ProxyView("gateway", "istio-system", labels=(("istio", "ingressgateway"),))
    (listener,) = gateway_listeners(snap, view).listeners
    (chain,) = listener.filter_chains
    (allowed,) = _tcp_proxy(chain).authz
    assert allowed.rules == (  # the `hosts` rule is HTTP-only: dropped
        AuthzRule(sources=((AuthzMatch("remote.ip", ("203.0.113.0/24",)),),)),
    )


# -- network RBAC filters -------------------------------------------------------------------


def test_network_rbac_filters_precede_tcp_proxy_in_deny_allow_audit_order() -> None:
    authz = (
        AuthzPolicy("default/log", "AUDIT", (AuthzRule(),)),
        AuthzPolicy("default/allow", "ALLOW", ()),
        AuthzPolicy(
            "default/deny",
            "DENY",
            (AuthzRule(conditions=(AuthzMatch("connection.sni", ("*.evil.example",)),)),),
        ),
    )
    chain = build_filter_chain(ir.FilterChain("c", ir.TcpProxy("s", "cluster", authz)))
    names = [f.name for f in chain.filters]
    assert names == [
        "envoy.filters.network.rbac.deny",
        "envoy.filters.network.rbac.allow",
        "envoy.filters.network.rbac.audit",
        "envoy.filters.network.tcp_proxy",
    ]
    configs = []
    for flt in chain.filters[:3]:
        config = network_rbac_pb2.RBAC()
        assert flt.typed_config.Unpack(config)
        assert config.stat_prefix == "tcp."
        configs.append(config)
    deny, allow, audit = configs
    assert deny.rules.action == rbac_pb2.RBAC.DENY
    (name,) = deny.rules.policies
    assert name == "ns[default]-policy[deny]-rule[0]"
    (permission,) = deny.rules.policies[name].permissions
    assert permission.requested_server_name.suffix == ".evil.example"
    # An ALLOW policy without rules: rules present, no policy, every connection closed.
    assert allow.HasField("rules") and allow.rules.action == rbac_pb2.RBAC.ALLOW
    assert not allow.rules.policies
    assert audit.rules.action == rbac_pb2.RBAC.LOG
    proxy = tcp_proxy_pb2.TcpProxy()
    assert chain.filters[3].typed_config.Unpack(proxy) and proxy.cluster == "cluster"


def test_tcp_proxy_without_policies_has_no_rbac_filter() -> None:
    chain = build_filter_chain(ir.FilterChain("c", ir.TcpProxy("s", "cluster")))
    assert [f.name for f in chain.filters] == ["envoy.filters.network.tcp_proxy"]
