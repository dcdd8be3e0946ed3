"""Authorization at the destination: mTLS identity, Envoy RBAC order, JWT."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from explain_helpers import EXPLICIT, REDIRECT, snapshot_of

from pilotfish import ir
from pilotfish.explain import authz
from pilotfish.explain.engine import explain
from pilotfish.explain.request import ExplainRequest, parse_header

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec:
  address: 10.0.0.11
  serviceAccount: reviews
  labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-productpage, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]
    to: [{operation: {methods: [GET]}}]
  - from: [{source: {requestPrincipals: ["https://issuer.test/alice"]}}]
"""

JWT = """\
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: "https://issuer.test", audiences: [reviews]}]
"""

CERTS = dataclasses.replace(EXPLICIT, workload_certs=True, service_account="productpage")


def _run(text: str, view: ir.ProxyConfig | object, url: str, method: str = "GET", *headers: str):  # type: ignore[no-untyped-def]
    request = ExplainRequest(url, method, tuple(parse_header(h) for h in headers))
    return explain(snapshot_of(text), view, request)  # type: ignore[arg-type]


def test_mtls_identity_is_the_principal() -> None:
    result = _run(MESH, CERTS, "http://reviews:9080/reviews")
    transport = next(s for s in result.steps if s.step == "transport")
    assert transport.chosen == "ISTIO_MUTUAL"
    assert result.outcome.authz == "ALLOW"
    assert result.outcome.authz_policy == "default/from-productpage"
    step = next(s for s in result.steps if s.step == "authorization")
    assert step.details["rule"] == 0
    assert "spiffe://cluster.local/ns/default/sa/productpage" in step.reasons[0]
    # Chain chosen by transport: mTLS, not the plaintext-rejecting one.
    chain = next(s for s in result.steps if s.step == "inbound filter chain")
    assert chain.chosen.endswith("-mtls")


def test_other_identity_or_method_is_denied() -> None:
    other = dataclasses.replace(CERTS, service_account="ratings")
    denied = _run(MESH, other, "http://reviews:9080/reviews")
    assert (denied.outcome.authz, denied.outcome.status) == ("DENY", 403)
    assert denied.outcome.authz_policy == "default/from-productpage"
    assert _run(MESH, CERTS, "http://reviews:9080/", "POST").outcome.authz == "DENY"


def test_deny_comes_before_allow() -> None:
    result = _run(MESH, CERTS, "http://reviews:9080/admin/x")
    assert (result.outcome.authz, result.outcome.authz_policy) == ("DENY", "default/no-admin")


def test_plaintext_caller_is_rejected_under_strict() -> None:
    # Without a certificate the caller speaks plaintext; STRICT has no chain for it.
    result = _run(MESH, EXPLICIT, "http://reviews:9080/")
    assert result.outcome.status == 503
    assert next(s for s in result.steps if s.step == "transport").chosen == "DISABLE"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(key: rsa.RSAPrivateKey) -> str:
    n = key.public_key().public_numbers().n
    jwk = {"kty": "RSA", "kid": "k", "alg": "RS256", "e": "AQAB"}
    return json.dumps({"keys": [{**jwk, "n": _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))}]})


def _token(claims: dict[str, object], key: rsa.RSAPrivateKey = KEY) -> str:
    head = _b64(json.dumps({"alg": "RS256", "kid": "k"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(sig)}"


def _jwt_status(text: str, token: str, method: str = "GET") -> tuple[int | None, str]:
    ratings = dataclasses.replace(CERTS, service_account="ratings")
    result = _run(text, ratings, "http://reviews:9080/", method, f"authorization: Bearer {token}")
    return result.outcome.status, result.outcome.authz


def test_jwt_verified_with_the_inline_jwks() -> None:
    text = MESH + JWT.replace("audiences: [reviews]", f"audiences: [reviews], jwks: '{_jwks(KEY)}'")
    alice = {"iss": "https://issuer.test", "sub": "alice", "aud": "reviews"}
    # requestPrincipals admits alice whatever the method; carol is denied.
    assert _jwt_status(text, _token(alice), "POST") == (None, "ALLOW")
    assert _jwt_status(text, _token({**alice, "sub": "carol"}), "POST") == (403, "DENY")
    # Envoy's jwt_authn answers: foreign key, unknown issuer, garbage 401; audience 403.
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _jwt_status(text, _token(alice, other_key))[0] == 401
    assert _jwt_status(text, _token({**alice, "iss": "https://evil"}))[0] == 401
    assert _jwt_status(text, "not-a-jwt")[0] == 401
    assert _jwt_status(text, _token({**alice, "aud": "other"}))[0] == 403


def test_unfetched_jwks_rejects_every_token_and_says_so() -> None:
    alice = _token({"iss": "https://issuer.test", "sub": "alice", "aud": "reviews"})
    ratings = dataclasses.replace(CERTS, service_account="ratings")
    result = _run(
        MESH + JWT, ratings, "http://reviews:9080/", "GET", f"authorization: Bearer {alice}"
    )
    assert result.outcome.status == 401
    assert any("not fetched" in n for n in result.outcome.notes)


def _policy(action: str, *rules: ir.AuthzRule, name: str = "ns/p") -> ir.AuthzPolicy:
    return ir.AuthzPolicy(name, action, rules)  # type: ignore[arg-type]


def _ctx(path: str = "/", principal: str = "", **kw: object) -> authz.AuthzContext:
    return authz.AuthzContext(ExplainRequest(f"http://h{path}"), principal, **kw)  # type: ignore[arg-type]


PATH_A = ir.AuthzRule(operations=((ir.AuthzMatch("request.path", ("/a*",)),),))


@pytest.mark.parametrize(
    ("policies", "path", "decision"),
    [
        ((), "/a", "ALLOW"),  # no policy: allowed
        ((_policy("ALLOW", PATH_A),), "/a/b", "ALLOW"),
        ((_policy("ALLOW", PATH_A),), "/b", "DENY"),  # ALLOW policies, none matches
        ((_policy("ALLOW"),), "/a", "DENY"),  # an ALLOW without rules matches nothing
        ((_policy("DENY", PATH_A), _policy("ALLOW", ir.AuthzRule())), "/a", "DENY"),
        ((_policy("DENY", PATH_A), _policy("ALLOW", ir.AuthzRule())), "/b", "ALLOW"),
        ((_policy("AUDIT", PATH_A),), "/a", "ALLOW"),  # AUDIT only marks
    ],
)
def test_rbac_order(policies: tuple[ir.AuthzPolicy, ...], path: str, decision: str) -> None:
    assert authz.evaluate(policies, _ctx(path)).decision == decision


def test_not_forms_namespaces_and_unknowns() -> None:
    not_ns = ir.AuthzRule(sources=((ir.AuthzMatch("source.namespace", ("prod*",), negate=True),),))
    allow = (_policy("ALLOW", not_ns),)
    assert authz.evaluate(allow, _ctx(principal="td/ns/dev/sa/x")).decision == "ALLOW"
    assert authz.evaluate(allow, _ctx(principal="td/ns/prod-1/sa/x")).decision == "DENY"
    by_ip = ir.AuthzRule(sources=((ir.AuthzMatch("source.ip", ("10.0.0.0/8",)),),))
    # The caller's address as the destination sees it is not known here.
    verdict = authz.evaluate((_policy("DENY", by_ip),), _ctx())
    assert verdict.decision == "UNKNOWN"
    assert (
        authz.evaluate((_policy("DENY", by_ip),), _ctx(source_ip="192.168.1.1")).decision == "ALLOW"
    )
    host = ir.AuthzRule(operations=((ir.AuthzMatch("request.host", ("h",)),),))
    assert authz.evaluate((_policy("ALLOW", host),), _ctx()).decision == "ALLOW"


TCP = """\
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  clusterIP: 10.96.0.30
  selector: {app: echo}
  ports: [{name: tcp-echo, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo, namespace: default}
spec:
  address: 10.0.0.21
  labels: {app: echo, security.istio.io/tlsMode: istio}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: echo-access, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/ratings]}}]
    to: [{operation: {ports: ["9000"]}}]
"""


def test_tcp_connection_is_decided_by_the_destination_tcp_rbac() -> None:
    caller = dataclasses.replace(REDIRECT, workload_certs=True, service_account="ratings")
    result = _run(TCP, caller, "tcp://echo:9000")
    steps = [s.step for s in result.steps]
    assert "tcp proxy" in steps and "virtual host" not in steps
    assert result.outcome.cluster == "outbound|9000||echo.default.svc.cluster.local"
    assert (result.outcome.authz, result.outcome.authz_policy) == ("ALLOW", "default/echo-access")
    other = dataclasses.replace(caller, service_account="reviews")
    assert _run(TCP, other, "tcp://echo:9000").outcome.authz == "DENY"
