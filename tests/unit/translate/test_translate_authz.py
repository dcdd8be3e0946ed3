"""AuthorizationPolicy and RequestAuthentication translation: which policies apply to a
proxy, how rules are specialized per port, and the JWT providers' keys."""

from __future__ import annotations

import json

from pilotfish.api.loader import load_text
from pilotfish.ir.security import AuthzMatch, AuthzRule, JwtHeader
from pilotfish.model.mesh_config import MeshConfig
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.security.authz import authz_policies
from pilotfish.translate.security.http_filters import (
    with_workload_security,
)
from pilotfish.translate.security.jwt import FAKE_JWKS, jwks_uris, jwt_authn, usable_jwks
from pilotfish.translate.security.selection import selected_policies
from pilotfish.translate.sidecar import sidecar_inbound

REVIEWS = {"app": "reviews", "version": "v1"}


def snapshot(text: str, jwks: dict[str, str] | None = None) -> Snapshot:
    result = load_text(text, "inline.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_snapshot(result.resources, 1, jwks=jwks)


def policy(name: str, ns: str, body: str) -> str:
    return f"""
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{body}
"""


def names(snap: Snapshot, ns: str = "default", labels: dict[str, str] | None = None) -> list[str]:
    chosen = selected_policies(snap, "AuthorizationPolicy", ns, labels or REVIEWS)
    return [f"{r.namespace}/{r.name}" for r in chosen]


# -- selection ---------------------------------------------------------------------------


def test_selection_mesh_namespace_and_workload_policies() -> None:
    snap = snapshot(
        policy("mesh", "istio-system", "  action: DENY\n  rules: [{}]")
        + policy("ns", "default", "  rules: [{}]")
        + policy("mine", "default", "  selector: {matchLabels: {app: reviews}}\n  rules: [{}]")
        + policy("other-app", "default", "  selector: {matchLabels: {app: ratings}}")
        + policy("other-ns", "test", "  rules: [{}]")
        + policy("root-selected", "istio-system", "  selector: {matchLabels: {app: reviews}}")
        + policy("partial", "default", "  selector: {matchLabels: {app: reviews, version: v2}}")
    )
    assert names(snap) == [
        "istio-system/mesh",
        "istio-system/root-selected",
        "default/mine",
        "default/ns",
    ]
    # A workload of another namespace gets only the mesh-wide policies and its own.
    assert names(snap, "test", {"app": "details"}) == ["istio-system/mesh", "test/other-ns"]


def test_target_ref_policies_apply_to_no_proxy() -> None:
    body = "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]"
    snap = snapshot(policy("attached", "default", body + "\n  rules: [{}]"))
    assert names(snap) == []


def test_root_namespace_follows_the_snapshot() -> None:
    result = load_text(policy("mesh", "mesh-root", "  rules: [{}]"), "inline.yaml")
    snap = build_snapshot(result.resources, 1, mesh=MeshConfig(root_namespace="mesh-root"))
    assert names(snap, "anywhere", {}) == ["mesh-root/mesh"]


# -- rules ---------------------------------------------------------------------------------


def test_empty_rules_and_match_all_rule() -> None:
    snap = snapshot(
        policy("nothing", "default", "  action: ALLOW")
        + policy("everything", "default", "  action: DENY\n  rules: [{}]")
    )
    by_name = {p.name: p for p in authz_policies(snap, "default", REVIEWS, 9080)}
    assert by_name["default/nothing"].rules == ()
    assert by_name["default/everything"].rules == (AuthzRule(),)


def test_ports_are_decided_per_port() -> None:
    body = """  rules:
  - to: [{operation: {ports: ["9080"], methods: [GET]}}, {operation: {ports: ["9090"]}}]
  - to: [{operation: {notPorts: ["9080"]}}]
  - when: [{key: destination.port, values: ["9080"]}]
  - when: [{key: destination.port, notValues: ["9080"]}]"""
    snap = snapshot(policy("ports", "default", body))
    (on_9080,) = authz_policies(snap, "default", REVIEWS, 9080)
    assert on_9080.rules == (
        AuthzRule(operations=((AuthzMatch("request.method", ("GET",)),),)),
        AuthzRule(),
    )
    (on_9090,) = authz_policies(snap, "default", REVIEWS, 9090)
    # 9090: the first rule's second operation matches anything, so the OR is "any".
    assert on_9090.rules == (AuthzRule(), AuthzRule(), AuthzRule())
    # On 7070 the policy still applies (an ALLOW policy that matches nothing there).
    (on_7070,) = authz_policies(snap, "default", REVIEWS, 7070)
    assert on_7070.rules == (AuthzRule(), AuthzRule())


def test_source_and_operation_fields_and_not_forms() -> None:
    body = """  rules:
  - from:
    - source: {principals: ["cluster.local/ns/a/sa/b"], notNamespaces: [x]}
    - source: {requestPrincipals: ["iss/sub"], notIpBlocks: ["10.0.0.0/8"]}
    to:
    - operation: {hosts: ["a.example.com"], notPaths: ["/admin*"]}
    when:
    - {key: "request.headers[X-Env]", values: [prod], notValues: [test]}
    - {key: "request.auth.claims[realm][role]", values: [admin]}"""
    snap = snapshot(policy("fields", "default", body))
    (p,) = authz_policies(snap, "default", REVIEWS, 9080)
    (rule,) = p.rules
    assert rule.sources == (
        (
            AuthzMatch("source.principal", ("cluster.local/ns/a/sa/b",)),
            AuthzMatch("source.namespace", ("x",), negate=True),
        ),
        (
            AuthzMatch("request.auth.principal", ("iss/sub",)),
            AuthzMatch("source.ip", ("10.0.0.0/8",), negate=True),
        ),
    )
    assert rule.operations == (
        (
            AuthzMatch("request.host", ("a.example.com",)),
            AuthzMatch("request.path", ("/admin*",), negate=True),
        ),
    )
    assert rule.conditions == (
        AuthzMatch("request.headers", ("prod",), "x-env"),
        AuthzMatch("request.headers", ("test",), "x-env", negate=True),
        AuthzMatch("request.auth.claims", ("admin",), "realm.role"),
    )


def test_unsupported_keys_fail_closed() -> None:
    when = (
        '  - when: [{key: "experimental.envoy.filters.network.mysql_proxy[db.table]",'
        ' values: ["[update]"]},'
        " {key: source.ip, values: [10.0.0.1]}]"
    )
    snap = snapshot(
        policy("allow", "default", "  action: ALLOW\n  rules:\n" + when)
        + policy("deny", "default", "  action: DENY\n  rules:\n" + when)
    )
    by_name = {p.name: p for p in authz_policies(snap, "default", REVIEWS, 9080)}
    assert by_name["default/allow"].rules == ()  # allows less
    assert by_name["default/deny"].rules == (  # denies more
        AuthzRule(conditions=(AuthzMatch("source.ip", ("10.0.0.1",)),)),
    )


# -- filters on the inbound HCM ---------------------------------------------------------------

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: tcp, port: 9100}]
"""

# Only HTTP: a TCP port's authorization is network RBAC, a listener setting.
HTTP_SERVICE = SERVICE.replace(", {name: tcp, port: 9100}", "")

JWKS = json.loads(FAKE_JWKS)
JWKS["keys"][0]["kid"] = "test"
JWKS_TEXT = json.dumps(JWKS)


def request_auth(name: str, ns: str, rules: str, selector: str = "") -> str:
    return f"""
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: {ns}}}
spec:
{selector}  jwtRules:
{rules}
"""


def test_filter_order_on_inbound_http_chain_only() -> None:
    snap = snapshot(
        SERVICE
        + policy("audit", "default", "  action: AUDIT\n  rules: [{}]")
        + policy("allow", "default", "  rules: [{}]")
        + policy("deny", "default", "  action: DENY\n  rules: [{to: [{operation: {paths: [/x]}}]}]")
        + request_auth("jwt", "default", f"  - issuer: me\n    jwks: '{JWKS_TEXT}'")
    )
    view = ProxyView("sidecar", "default", labels=tuple(REVIEWS.items()), interception="NONE")
    listeners = {lst.port: lst for lst in sidecar_inbound(snap, view).listeners}
    http = listeners[9080].default_chain
    assert http is not None
    assert http.filter.http_filters == (  # type: ignore[union-attr]
        "peer_metadata",
        "grpc_messages",
        "jwt_authn",
        "rbac_deny",
        "rbac_allow",
        "rbac_audit",
    )
    assert [p.action for p in http.filter.authz] == ["ALLOW", "AUDIT", "DENY"]  # type: ignore[union-attr]
    tcp = listeners[9100].default_chain
    assert tcp is not None and not hasattr(tcp.filter, "http_filters")


def test_without_policies_the_rbac_filters_are_there_and_enforce_per_route() -> None:
    from pilotfish.ir import HttpConnectionManager

    hcm = HttpConnectionManager("s", route_config_name="r", http_filters=("fault",))
    secured = with_workload_security(hcm, snapshot(SERVICE), "default", REVIEWS, 9080)
    assert secured.policy_per_route
    assert (secured.jwt, secured.authz) == (None, ())
    assert secured.http_filters == ("rbac_deny", "rbac_allow", "rbac_audit", "fault")


def _inbound(snap: Snapshot) -> tuple[list[bytes], dict[str, object]]:
    """The built inbound listeners of a reviews sidecar, and its virtual hosts' policies."""
    from pilotfish.xds.build.listeners import build_listener

    view = ProxyView("sidecar", "default", labels=tuple(REVIEWS.items()), interception="REDIRECT")
    parts = sidecar_inbound(snap, view)
    built = [build_listener(lst).SerializeToString(deterministic=True) for lst in parts.listeners]
    policies = {vh.name: vh.policy for rc in parts.route_configs for vh in rc.virtual_hosts}
    return built, policies


def test_an_authorization_policy_changes_the_routes_and_not_the_listener() -> None:
    """Envoy applies a route change to connections already open, a listener
    change only to new ones: a policy must be the former."""
    before, before_policies = _inbound(snapshot(HTTP_SERVICE))
    deny = policy(
        "deny", "default", "  action: DENY\n  rules: [{to: [{operation: {paths: [/x]}}]}]"
    )
    after, after_policies = _inbound(snapshot(HTTP_SERVICE + deny))
    assert after == before
    assert before_policies == {"inbound|http|9080": None}
    applied = after_policies["inbound|http|9080"]
    assert applied is not None
    assert [(p.name, p.action) for p in applied.authz] == [("default/deny", "DENY")]  # type: ignore[attr-defined]
    assert applied.jwt is False  # type: ignore[attr-defined]


def test_a_request_authentication_puts_its_requirement_on_the_routes() -> None:
    jwt = request_auth("jwt", "default", f"  - issuer: me\n    jwks: '{JWKS_TEXT}'")
    _, policies = _inbound(snapshot(SERVICE + jwt))
    applied = policies["inbound|http|9080"]
    assert applied is not None and applied.jwt is True  # type: ignore[attr-defined]


# -- JWT ---------------------------------------------------------------------------------------


def test_jwt_providers_fields_and_keys() -> None:
    uri = "https://issuer.example.com/jwks"
    rules = f"""  - issuer: https://issuer.example.com
    audiences: [a, b]
    jwksUri: {uri}
    fromHeaders: [{{name: x-token, prefix: "Bearer "}}]
    fromParams: [tok]
    forwardOriginalToken: true
    outputPayloadToHeader: x-payload
  - issuer: unfetched
    jwksUri: https://elsewhere.example.com/jwks
  - issuer: broken
    jwks: '{{"keys": [{{"kty": "RSA", "e": "AQAB"}}]}}'"""
    text = SERVICE + request_auth(
        "ra", "default", rules, "  selector: {matchLabels: {app: reviews}}\n"
    )
    snap = snapshot(text, jwks={uri: JWKS_TEXT})
    jwt = jwt_authn(snap, "default", REVIEWS)
    assert jwt is not None
    first, unfetched, broken = jwt.providers
    assert first.name == "default/ra/0"
    assert first.audiences == ("a", "b")
    assert first.jwks == JWKS_TEXT
    assert first.from_headers == (JwtHeader("x-token", "Bearer "),)
    assert first.from_params == ("tok",)
    assert first.forward and first.output_payload_to_header == "x-payload"
    assert unfetched.jwks == FAKE_JWKS and broken.jwks == FAKE_JWKS
    assert jwt_authn(snap, "default", {"app": "ratings"}) is None
    assert jwks_uris(snap.resources) == {uri, "https://elsewhere.example.com/jwks"}


def test_usable_jwks() -> None:
    assert usable_jwks(FAKE_JWKS)
    assert usable_jwks('{"keys": [{"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}]}')
    for bad in ("", "[]", "{}", '{"keys": []}', '{"keys": [{"kty": "XYZ"}]}', '{"keys": [1]}'):
        assert not usable_jwks(bad), bad
    assert not usable_jwks('{"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}')


def test_fetched_jwks_change_the_config_generation() -> None:
    result = load_text(SERVICE, "inline.yaml")
    first = build_snapshot(result.resources, 1)
    same = build_snapshot(result.resources, 2, first)
    changed = build_snapshot(result.resources, 3, same, jwks={"https://x/jwks": JWKS_TEXT})
    assert same.config_generation == first.config_generation
    assert changed.config_generation == same.config_generation + 1
    assert changed.jwks == {"https://x/jwks": JWKS_TEXT}
