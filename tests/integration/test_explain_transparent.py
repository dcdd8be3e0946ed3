"""``pilotfish explain`` against a transparent (iptables, mTLS) Bookinfo mesh.

The Envoy-backed routing and authorization tests run explicit sidecars; this
one checks the other layout: captured outbound (``virtualOutbound``), auto
mTLS to pods, ``virtualInbound`` chains chosen by transport and the caller's
SPIFFE identity in RBAC, end to end through the ingress gateway. explain's
verdict must equal Envoy's answer before and after a DENY policy is applied,
and ``--config`` must predict the change before it is applied.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanes import lane_bridge, lane_cidr
from pilotfish.runtime.network import is_root
from pilotfish.runtime.ports import free_port as _free_port
from polling import poll

pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.timeout(400),
    pytest.mark.skipif(not is_root(), reason="needs root: network namespaces and iptables"),
    pytest.mark.skipif(shutil.which("iptables") is None, reason="iptables is not installed"),
]

SAMPLES = Path(__file__).parents[2] / "samples" / "bookinfo"
PILOTFISH = [sys.executable, "-m", "pilotfish.cli.main"]
GATEWAY = "istio-ingressgateway.istio-system"
PRODUCTPAGE = "outbound|9080||productpage.default.svc.cluster.local"

DENY_LOGOUT = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-gateway-logout, namespace: default}
spec:
  selector: {matchLabels: {app: productpage}}
  action: DENY
  rules:
  - from: [{source: {principals: [cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account]}}]
    to: [{operation: {paths: [/logout]}}]
"""  # noqa: E501


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the answer itself (``/logout`` redirects)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Mesh:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.ingress, self.cp = _free_port(), _free_port()

    def cli(self, *args: str) -> str:
        proc = subprocess.run([*PILOTFISH, *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def api(self) -> list[str]:
        return ["--control-plane", f"http://127.0.0.1:{self.cp}", "--token-file",
                str(self.state / "api-token")]  # fmt: skip

    def explain(self, url: str, *args: str) -> dict[str, Any]:
        out = self.cli("explain", "--from", GATEWAY, url, "-o", "json", *args, *self.api())
        return dict(json.loads(out))

    def status(self, path: str) -> int:
        # The gateway is published on the host: no HTTP proxy may come in between.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())
        try:
            with opener.open(f"http://127.0.0.1:{self.ingress}{path}", timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[_Mesh]:
    m = _Mesh(tmp_path / "state")
    up = [
        "up", str(SAMPLES / "bookinfo.yaml"), str(SAMPLES / "networking" / "bookinfo-gateway.yaml"),
        "--detach", "--mode", "transparent", "--state-dir", str(m.state),
        "--ingress-port", str(m.ingress), "--control-plane-port", str(m.cp),
        "--xds-port", str(_free_port()), "--secure-port", str(_free_port()),
        "--xds-mtls-port", str(_free_port()),
        "--bridge", lane_bridge("pfexpl"), "--pod-cidr", lane_cidr("198.18.246.0/24"),
        "--service-cidr", lane_cidr("198.19.246.0/24"),
        "--explicit-cidr", lane_cidr("127.76.0.0/24"),
    ]  # fmt: skip
    try:
        m.cli(*up)
        yield m
    finally:
        subprocess.run([*PILOTFISH, "down", "--state-dir", str(m.state)], timeout=120, check=False)


def _step(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in result["steps"] if s["step"] == name)


def test_explain_matches_envoy_in_a_transparent_mtls_mesh(mesh: _Mesh, tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{mesh.ingress}"
    poll(lambda: mesh.status("/productpage") == 200, "the ingress route", deadline=60)
    page = mesh.explain(base + "/productpage")
    assert page["outcome"]["cluster"] == PRODUCTPAGE
    assert (page["outcome"]["authz"], page["outcome"]["status"]) == ("ALLOW", None)
    assert _step(page, "transport")["chosen"] == "ISTIO_MUTUAL"
    assert _step(page, "destination")["chosen"] == "productpage-v1-0.default"
    assert _step(page, "inbound filter chain")["chosen"].endswith("-mtls")
    # /logout answers with the app's redirect: nothing denies it yet.
    assert mesh.status("/logout") == 302
    assert mesh.explain(base + "/logout")["outcome"]["authz"] == "ALLOW"

    # --config predicts the DENY before it is applied; Envoy still allows.
    pending = tmp_path / "pending"
    pending.mkdir()
    (pending / "deny.yaml").write_text(DENY_LOGOUT)
    predicted = mesh.explain(base + "/logout", "--config", str(pending))["outcome"]
    assert (predicted["authz"], predicted["authz_policy"]) == ("DENY", "default/no-gateway-logout")
    assert mesh.status("/logout") == 302

    mesh.cli("apply", "-f", str(pending / "deny.yaml"), *mesh.api())
    poll(lambda: mesh.status("/logout") == 403, "the DENY policy to reach productpage", deadline=30)
    applied = mesh.explain(base + "/logout")["outcome"]
    assert (applied["authz"], applied["status"]) == ("DENY", 403)
    authz = _step(mesh.explain(base + "/logout"), "authorization")
    assert authz["reasons"][0] == (
        "caller identity: spiffe://cluster.local/ns/istio-system/sa/"
        "istio-ingressgateway-service-account"
    )
    # Other paths stay allowed, in Envoy and in explain.
    assert mesh.status("/productpage") == 200
    assert mesh.explain(base + "/productpage")["outcome"]["authz"] == "ALLOW"
