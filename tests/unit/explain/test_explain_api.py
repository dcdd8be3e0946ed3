"""``/debug/explain`` on the control plane's API, and ``pilotfish explain`` offline."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

import aiohttp
from aiohttp import web
from click.testing import CliRunner
from explain_helpers import EXPLICIT, snapshot_of

from pilotfish.cli.main import cli
from pilotfish.controlplane.explain_api import _peer_finder, add_explain_api
from pilotfish.explain.engine import explain
from pilotfish.explain.request import ExplainRequest
from pilotfish.model.proxy_view import ProxyView

LIVE = """\
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
spec: {address: 10.0.0.11, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 10.0.0.12, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage, namespace: default}
spec: {address: 127.0.0.5, labels: {app: productpage}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
"""

TO_V2 = LIVE.split("---\n")[-1].replace("subset: v1", "subset: v2")
V1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
V2 = "outbound|9080|v2|reviews.default.svc.cluster.local"


class _Xds:
    """The one thing the route reads of the xDS server: connected proxies' views."""

    def views(self) -> dict[str, object]:
        return {"productpage-7f9c.default": EXPLICIT}


async def _serve() -> tuple[web.AppRunner, str]:
    app = web.Application()
    snapshot = snapshot_of(LIVE)
    add_explain_api(app, lambda: snapshot, lambda: _Xds())  # type: ignore[arg-type,return-value]
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/debug/explain"


async def test_get_and_post_with_config_over_the_live_one() -> None:
    runner, url = await _serve()
    try:
        async with aiohttp.ClientSession() as s:
            # A workload name finds its pod's proxy.
            params = {"from": "productpage", "url": "http://reviews:9080/"}
            async with s.get(url, params=params) as resp:
                body = await resp.json()
            assert resp.status == 200, body
            assert body["from"] == "productpage-7f9c.default"
            assert body["outcome"]["cluster"] == V1
            assert [step["step"] for step in body["steps"]][:3] == [
                "source",
                "listener",
                "filter chain",
            ]
            post = {**params, "config": [{"file": "vs.yaml", "text": TO_V2}]}
            async with s.post(url, json=post) as resp:
                assert (await resp.json())["outcome"]["cluster"] == V2
            # The live configuration is untouched.
            async with s.get(url, params=params) as resp:
                assert (await resp.json())["outcome"]["cluster"] == V1
            broken = {**params, "config": [{"file": "bad.yaml", "text": "kind: VirtualService\n"}]}
            async with s.post(url, json=broken) as resp:
                assert resp.status == 400
                assert (await resp.json())["diagnostics"][0]["file"] == "bad.yaml"
            async with s.get(url, params={"from": "nobody", "url": "http://x/"}) as resp:
                assert resp.status == 404
            async with s.get(url, params={"from": "productpage"}) as resp:
                assert resp.status == 400
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_offline_explains_the_directory_alone(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(LIVE.replace("subset: v1", "subset: v2"))
    args = [
        "explain",
        "--from",
        "productpage",
        "http://reviews:9080/x",
        "-H",
        "end-user: jason",
        "--config",
        str(tmp_path),
        "--control-plane",
        f"http://127.0.0.1:{_closed_port()}",
    ]
    result = CliRunner().invoke(cli, [*args, "-o", "json"], env={"PILOTFISH_API_TOKEN": ""})
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["outcome"]["cluster"] == V2
    assert {"step", "chosen", "reasons"} <= set(body["steps"][0])
    assert "explaining" in result.stderr and "alone" in result.stderr
    text = CliRunner().invoke(cli, args, env={"PILOTFISH_API_TOKEN": ""})
    assert text.exit_code == 0, text.output
    assert " 6. route: default/reviews/0\n" in text.stdout
    assert f"Result: sent to {V2}" in text.stdout
    missing = CliRunner().invoke(
        cli, [*args[:2], "nobody", *args[3:]], env={"PILOTFISH_API_TOKEN": ""}
    )
    assert (
        missing.exit_code != 0 and "no WorkloadEntry or Workload default/nobody" in missing.output
    )


SECURE = (
    LIVE.replace("labels: {app: reviews, version: v1}", "labels: {app: reviews, version: v1, "
                 "security.istio.io/tlsMode: istio}")
    + """\
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/productpage]}}]}]
"""
)  # fmt: skip


def test_connected_capturing_destination_is_found_by_labels() -> None:
    caller = ProxyView(
        "sidecar", "default", (("app", "productpage"),), "productpage", "REDIRECT",
        "0.0.0.0", workload_certs=True,
    )  # fmt: skip
    reviews = dataclasses.replace(
        caller, labels=(("app", "reviews"), ("version", "v1")), service_account="reviews"
    )
    views: dict[str, object] = {"productpage-1.default": caller, "reviews-v1-x.default": reviews}
    request = ExplainRequest("http://reviews:9080/")
    result = explain(snapshot_of(SECURE), caller, request, find_peer=_peer_finder(views))
    destination = next(s for s in result.steps if s.step == "destination")
    assert destination.chosen == "reviews-v1-x.default"
    assert next(s for s in result.steps if s.step == "transport").chosen == "ISTIO_MUTUAL"
    assert (result.outcome.authz, result.outcome.authz_policy) == ("ALLOW", "default/reviews")
    # Another caller identity is denied by the same connected proxy's policy.
    other = dataclasses.replace(caller, service_account="ratings")
    denied = explain(snapshot_of(SECURE), other, request, find_peer=_peer_finder(views))
    assert (denied.outcome.authz, denied.outcome.status) == ("DENY", 403)
