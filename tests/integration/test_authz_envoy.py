"""AuthorizationPolicy and RequestAuthentication enforced by real sidecars.

A client sidecar calls ``reviews`` through the reviews sidecar, whose inbound
side carries the jwt_authn and RBAC filters. The JWKS is served by a local
in-test issuer and fetched by the control plane from its ``jwksUri``; tokens
are RS256 JWTs signed here with ``cryptography``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from meshkit import Mesh, Proxy, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ISSUER = "https://issuer.pilotfish.test"

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v1, namespace: default}}
spec: {{address: {ip}, labels: {{app: reviews, version: v1}}}}
"""

POLICIES = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: reviews-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  jwtRules:
  - issuer: {issuer}
    audiences: [reviews]
    jwksUri: {jwks_uri}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: no-admin, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  action: DENY
  rules:
  - to: [{{operation: {{paths: ["/admin*"]}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: reviews-access, namespace: default}}
spec:
  selector: {{matchLabels: {{app: reviews}}}}
  action: ALLOW
  rules:
  - to: [{{operation: {{methods: [GET], paths: ["/public/*", "/exact"]}}}}]
  - from: [{{source: {{requestPrincipals: ["{issuer}/alice"]}}}}]
  - to: [{{operation: {{methods: [POST]}}}}]
    when: [{{key: "request.headers[x-user]", values: [bob]}}]
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """An RS256 key: its public JWKS and tokens signed with it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        numbers = self.key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "e": "AQAB"}
        return json.dumps({"keys": [{**key, "n": _b64(n)}]})

    def token(self, sub: str, aud: str = "reviews", iss: str = ISSUER) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        now = int(time.time())
        claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + 600}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
async def issuer() -> AsyncIterator[tuple[Signer, str]]:
    signer = Signer("k1")

    async def jwks(_request: web.Request) -> web.Response:
        return web.Response(text=signer.jwks(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield signer, f"http://127.0.0.1:{server.port}/jwks"
    finally:
        await server.close()


async def _request(
    mesh: Mesh,
    client: Proxy,
    path: str,
    *,
    method: str = "GET",
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    assert mesh.session is not None
    hdrs = {"Host": "reviews:9080", **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    async with mesh.session.request(method, client.outbound + path, headers=hdrs) as resp:
        return resp.status, await resp.text()


async def test_authorization_and_jwt_through_real_sidecars(
    mesh: Mesh, issuer: tuple[Signer, str]
) -> None:
    signer, jwks_uri = issuer
    ip = mesh.new_ip()
    mesh.write("reviews.yaml", SERVICE.format(ip=ip))
    mesh.write("policies.yaml", POLICIES.format(issuer=ISSUER, jwks_uri=jwks_uri))
    app_port = await mesh.app("reviews", "v1")
    server = mesh.agent("reviews-v1", ip=ip, labels={"app": "reviews"}, app_ports={9080: app_port})
    client = mesh.agent("productpage", labels={"app": "productpage"})
    for proxy in (server, client):
        await mesh.ready(proxy)

    alice = signer.token("alice")

    async def converged() -> bool:
        # The DENY filter is in place and the fetched JWKS verifies alice's token.
        denied = await _request(mesh, client, "/admin")
        allowed = await _request(mesh, client, "/private", token=alice)
        return denied[0] == 403 and allowed[0] == 200

    await poll(converged, "policies and the fetched JWKS to reach the sidecar")

    explained: list[tuple[str, int]] = []

    async def status(path: str, **kw: Any) -> int:
        code = (await _request(mesh, client, path, **kw))[0]
        # `pilotfish explain` predicts the same answer from the generated IR:
        # the destination's JWT check and RBAC verdict (200 when it allows).
        headers = dict(kw.get("headers") or {})
        if kw.get("token") is not None:
            headers["Authorization"] = f"Bearer {kw['token']}"
        outcome = await mesh.explain(
            client, f"http://reviews:9080{path}", method=kw.get("method", "GET"), headers=headers
        )
        predicted = outcome["status"] if outcome["status"] is not None else 200
        assert predicted == code, (path, kw, outcome)
        explained.append((path, code))
        return code

    # ALLOW by operation; the path is matched without its query string.
    assert await status("/public/page") == 200
    assert await status("/exact?q=1") == 200
    # DENY comes first, even for a caller an ALLOW rule would admit.
    code, body = await _request(mesh, client, "/admin/users", token=alice)
    assert (code, body) == (403, "RBAC: access denied")
    assert await status("/admin/users", token=alice) == 403
    outcome = await mesh.explain(
        client, "http://reviews:9080/admin/users", headers={"Authorization": f"Bearer {alice}"}
    )
    assert (outcome["authz"], outcome["authz_policy"]) == ("DENY", "default/no-admin")
    # No ALLOW rule matches: denied.
    code, body = await _request(mesh, client, "/private")
    assert (code, body) == (403, "RBAC: access denied")
    assert await status("/private") == 403
    assert await status("/public/page", method="DELETE") == 403
    # requestPrincipals: alice's valid token is allowed, another subject is not.
    assert await status("/private", token=signer.token("carol")) == 403
    # Header condition with a method.
    assert await status("/private", method="POST", headers={"x-user": "bob"}) == 200
    assert await status("/private", method="POST", headers={"x-user": "eve"}) == 403
    # A token that is present but invalid is rejected by jwt_authn (401), even where
    # no token is needed: foreign signer, unknown issuer, garbage.
    assert await status("/public/page", token=Signer("k1").token("alice")) == 401
    assert await status("/public/page", token=signer.token("alice", iss="https://evil")) == 401
    assert await status("/public/page", token="not-a-jwt") == 401
    # A valid token for another audience: Envoy (so Istio too) answers 403, not 401.
    code, body = await _request(
        mesh, client, "/public/page", token=signer.token("alice", aud="other")
    )
    assert (code, body) == (403, "Audiences in Jwt are not allowed")
    assert await status("/public/page", token=signer.token("alice", aud="other")) == 403
    # A missing token passes jwt_authn: the ALLOW rule by operation still applies.
    assert await status("/public/page") == 200
    allowed = await mesh.explain(client, "http://reviews:9080/public/page")
    assert (allowed["authz"], allowed["authz_policy"]) == ("ALLOW", "default/reviews-access")
    # Every request above was also explained (and agreed with Envoy).
    assert len(explained) == 13, explained
