"""Which Gateway API Gateways the local mesh deploys, under Istio's names and labels."""

from __future__ import annotations

from pathlib import Path

from pilotfish.api.loader import load_text
from pilotfish.api.resource import Resource
from pilotfish.runtime.gateway_plans import DeploymentPlan, plan_deployments

SAMPLES = Path(__file__).resolve().parents[2] / "testdata" / "istio-samples"
BOOKINFO_GATEWAY = SAMPLES / "bookinfo" / "gateway-api" / "bookinfo-gateway.yaml"


def _load(text: str) -> list[Resource]:
    result = load_text(text, "gateways.yaml")
    assert result.ok, result.diagnostics
    return list(result.resources)


def _gateway(name: str, cls: str, namespace: str = "default", extra: str = "") -> str:
    return f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {name}
  namespace: {namespace}
{extra}spec:
  gatewayClassName: {cls}
  listeners:
  - name: http
    port: 80
    protocol: HTTP
  - name: other.http
    port: 8080
    protocol: HTTP
  - name: again
    port: 80
    protocol: HTTP
    hostname: again.example.com
---
"""


def test_istios_bookinfo_gateway_is_deployed_as_istio_names_it() -> None:
    plans = plan_deployments(_load(BOOKINFO_GATEWAY.read_text()))
    assert plans == {
        "bookinfo-gateway-istio": DeploymentPlan(
            namespace="default",
            gateway="bookinfo-gateway",
            class_name="istio",
            name="bookinfo-gateway-istio",
            service_account="bookinfo-gateway-istio",
            ports=(("status-port", 15021), ("http", 80)),
        )
    }
    plan = plans["bookinfo-gateway-istio"]
    assert dict(plan.labels) == {
        "gateway.networking.k8s.io/gateway-name": "bookinfo-gateway",
        "istio.io/gateway-name": "bookinfo-gateway",
        "gateway.networking.k8s.io/gateway-class-name": "istio",
    }
    assert DeploymentPlan.from_json(plan.to_json()) == plan


def test_ports_once_per_number_with_service_port_names() -> None:
    (plan,) = plan_deployments(_load(_gateway("web", "istio", "shop"))).values()
    # One Service port per listener port; dots are not allowed in port names.
    assert plan.ports == (("status-port", 15021), ("http", 80), ("other-http", 8080))
    assert plan.local_id == "web-istio.shop"


def test_only_classes_of_our_controllers_are_deployed() -> None:
    classes = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pilotfish}
spec: {controllerName: pilotfish.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: someone-else}
spec: {controllerName: example.com/gateway-controller}
---
"""
    text = classes + _gateway("a", "pilotfish") + _gateway("b", "someone-else")
    text += _gateway("c", "istio") + _gateway("d", "no-such-class")
    plans = plan_deployments(_load(text))
    # ``istio`` is built in even without a GatewayClass object, as in Istio.
    assert sorted(plans) == ["a-pilotfish", "c-istio"]


def test_a_gatewayclass_named_istio_of_another_controller_is_not_ours() -> None:
    text = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec: {controllerName: example.com/gateway-controller}
---
""" + _gateway("a", "istio")
    assert plan_deployments(_load(text)) == {}


def test_annotations_override_names_and_a_hostname_address_means_unmanaged() -> None:
    overridden = _gateway(
        "a",
        "istio",
        extra="  annotations:\n"
        "    gateway.istio.io/name-override: edge\n"
        "    gateway.istio.io/service-account: edge-sa\n",
    )
    unmanaged = _gateway("b", "istio").replace(
        "  listeners:", "  addresses:\n  - type: Hostname\n    value: lb.example.com\n  listeners:"
    )
    plans = plan_deployments(_load(overridden + unmanaged))
    assert list(plans) == ["edge"]
    assert plans["edge"].service_account == "edge-sa" and plans["edge"].gateway == "a"
