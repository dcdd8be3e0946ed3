"""``pilotfish analyze`` with no files: the live control plane's configuration."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from test_cli_apply_get import LiveControlPlane

from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.resource import ResourceKey
from pilotfish.cli.analyze_live import live_resources
from pilotfish.cli.client import connect
from pilotfish.cli.main import cli
from pki import TestCa
from polling import poll

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: {ns}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{host: reviews}}
"""


def _generic_credential() -> str:
    """An Opaque Secret with Istio's generic ``cert``/``key`` layout: a usable
    credential (else IST0161), whose values live analysis never sees."""
    leaf = TestCa().issue("shop")
    data = {
        k: base64.b64encode(v.encode()).decode()
        for k, v in (("cert", leaf.cert_pem), ("key", leaf.key_pem))
    }
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shop-cert", "namespace": "istio-system"},
        "type": "Opaque",
        "data": data,
    }
    return json.dumps(doc) + "\n"


SECRET = (
    _generic_credential()
    + """\
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: shop-cert}
"""
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveControlPlane]:
    served = tmp_path / "served"
    served.mkdir()
    (served / "shop.yaml").write_text(VS.format(ns="shop") + "---\n" + SECRET)
    (served / "default.yaml").write_text(VS.format(ns="default"))
    with LiveControlPlane(served) as live:
        poll(
            lambda: live.get(ResourceKey("Gateway", "default", "shop")) is not None,
            "the served files to load",
        )
        yield live


def run(live: LiveControlPlane, *args: str) -> Result:
    argv = ["analyze", *args, "--control-plane", live.url, "--token-file", str(live.token_file)]
    return CliRunner().invoke(cli, argv, catch_exceptions=False)


def _origins(result: Result) -> list[tuple[str, str]]:
    return [(i["code"], i["origin"]) for i in json.loads(result.stdout)]


def test_no_files_analyzes_the_control_planes_default_namespace(live: LiveControlPlane) -> None:
    result = run(live, "-o", "json")
    assert result.exit_code == 79, result.output
    # As istioctl: without -n or -A, the default namespace only. The Gateway's
    # Secret sits in istio-system beside the ingress workload: no finding.
    assert _origins(result) == [("IST0101", "VirtualService default/reviews")]
    # Live objects have no file: no reference.
    assert "reference" not in json.loads(result.stdout)[0]


def test_all_namespaces_and_one_namespace(live: LiveControlPlane) -> None:
    assert sorted(_origins(run(live, "-o", "json", "-A"))) == [
        ("IST0101", "VirtualService default/reviews"),
        ("IST0101", "VirtualService shop/reviews"),
    ]
    assert _origins(run(live, "-o", "json", "-n", "shop")) == [
        ("IST0101", "VirtualService shop/reviews")
    ]
    text = run(live, "-A")
    assert text.stdout.splitlines()[-1].startswith("2 errors, 0 warnings in the control plane's")


def _get_yaml(live: LiveControlPlane, *args: str) -> Any:
    argv = ["get", *args, "-o", "yaml", "--control-plane", live.url]
    result = CliRunner().invoke(cli, [*argv, "--token-file", str(live.token_file)])
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_get_shows_validation_messages_in_status(live: LiveControlPlane) -> None:
    vs = _get_yaml(live, "virtualservice", "reviews", "-n", "default")
    assert vs["status"]["validationMessages"] == [
        {
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
            "level": "ERROR",
            "type": {"code": "IST0101", "name": "ReferencedResourceNotFound"},
            "message": "host 'reviews.default.svc.cluster.local' matches no Service or "
            "ServiceEntry",
            "field": "spec.http[0].route[0].destination.host",
        }
    ]
    # The near miss: the Gateway's credential is found beside its workload, no status.
    gateway = _get_yaml(live, "gateway", "shop", "-n", "default")
    assert "status" not in gateway


def _tls_credential(name: str) -> str:
    """A ``kubernetes.io/tls`` Secret in istio-system, beside the ingress gateway."""
    leaf = TestCa().issue("shop")
    data = {
        k: base64.b64encode(v.encode()).decode()
        for k, v in (("tls.crt", leaf.cert_pem), ("tls.key", leaf.key_pem))
    }
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "istio-system"},
        "type": "kubernetes.io/tls",
        "data": data,
    }
    return json.dumps(doc) + "\n"


def test_live_tls_secrets_keep_their_keys_not_their_values(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    gateway = SECRET.split("---\n", 1)[1].replace("shop-cert", "shop-tls")
    (served / "tls.yaml").write_text(_tls_credential("shop-tls") + "---\n" + gateway)
    with LiveControlPlane(served) as live:
        key = ResourceKey("Gateway", "default", "shop")
        poll(lambda: live.get(key) is not None, "the served files to load")
        api = connect(live.url, str(live.token_file))
        resources, problems = live_resources(api)
        assert problems == []
        [secret] = [r for r in resources if r.kind == "Secret"]
        assert isinstance(secret.spec, SecretSpec)
        assert secret.spec.type == "kubernetes.io/tls"
        assert secret.spec.data == {"tls.crt": "", "tls.key": ""}  # names only, no values
        # The Gateway's credential exists: no IST0101 (nor IST0161, values unseen).
        result = run(live, "-o", "json", "-A")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []
