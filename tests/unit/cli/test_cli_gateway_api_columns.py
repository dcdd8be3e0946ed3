"""``get`` tables for the Gateway API kinds show kubectl's columns, status included."""

from __future__ import annotations

from pilotfish.cli.get import table_rows


def _accepted(status: str) -> dict[str, object]:
    return {"type": "Accepted", "status": status, "reason": "x"}


def test_gateway_columns_read_spec_and_status() -> None:
    gateway = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
        },
        "status": {
            "addresses": [{"type": "IPAddress", "value": "10.1.0.5"}],
            "conditions": [{"type": "Programmed", "status": "True"}],
        },
    }
    assert table_rows("KubernetesGateway", [gateway], with_namespace=False) == [
        ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "LISTENERS"],
        ["web", "istio", "10.1.0.5", "True", "http:HTTP/80"],
    ]
    bare = {"metadata": {"name": "new"}, "spec": {"gatewayClassName": "istio"}}
    assert table_rows("KubernetesGateway", [bare], with_namespace=False)[1] == [
        "new",
        "istio",
        "<none>",
        "Unknown",
        "<none>",
    ]


def test_route_columns_summarise_every_parent() -> None:
    route = {
        "metadata": {"name": "shop"},
        "spec": {
            "hostnames": ["a.example.com", "b.example.com"],
            "parentRefs": [{"name": "web", "sectionName": "http"}, {"name": "other"}],
        },
        "status": {
            "parents": [
                {"conditions": [_accepted("True")]},
                {"conditions": [_accepted("False")]},
            ]
        },
    }
    assert table_rows("HTTPRoute", [route], with_namespace=False) == [
        ["NAME", "HOSTNAMES", "PARENTS", "ACCEPTED"],
        ["shop", "a.example.com,b.example.com", "web/http,other", "False"],
    ]
    gc = {"metadata": {"name": "istio"}, "spec": {"controllerName": "istio.io/gateway-controller"}}
    assert table_rows("GatewayClass", [gc], with_namespace=False)[1] == [
        "istio",
        "istio.io/gateway-controller",
        "Unknown",
    ]
