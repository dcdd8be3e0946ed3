from __future__ import annotations

import pytest
from api_testing import Loader

WE = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm}
spec:
"""
SVC = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
"""


def _problems(load: Loader, head: str, spec: str) -> dict[str, tuple[bool, str]]:
    result = load(head + "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n")
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


def test_good_workload_entries(load: Loader) -> None:
    good = (
        "address: 10.1.2.3\nports: {http: 8080}\nlabels: {app: web}\nserviceAccount: web\nweight: 2"
    )
    assert _problems(load, WE, good) == {}
    assert _problems(load, WE, "address: vm-1.example.com") == {}
    assert _problems(load, WE, "address: unix:///var/run/app.sock") == {}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("ports: {http: 80}", "spec.address", "required"),
        ("address: 'bad address'", "spec.address", "not an IP address or DNS name"),
        ("address: 10.0.0.1\nports: {http: 0}", "spec.ports.http", "out of range"),
        ("address: 10.0.0.1\nports: {Bad_Name: 80}", "spec.ports.Bad_Name", "DNS-1123"),
        ("address: unix:///s.sock\nports: {http: 80}", "spec.ports", "no ports"),
        (
            "address: 10.0.0.1\nlabels: {app: 'no spaces allowed'}",
            "spec.labels.app",
            "invalid label value",
        ),
        ("address: 10.0.0.1\nweight: -1", "spec.weight", "negative"),
    ],
)
def test_bad_workload_entries(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, WE, spec)
    assert field in problems, problems
    assert problems[field][0] and fragment in problems[field][1]


def test_good_services(load: Loader) -> None:
    assert _problems(load, SVC, "ports: [{port: 80}]") == {}
    several = (
        "selector: {app: web}\nports: [{name: http, port: 80, targetPort: http-web},"
        " {name: grpc, port: 81, targetPort: 9000}]"
    )
    assert _problems(load, SVC, several) == {}
    assert _problems(load, SVC, "clusterIP: None\nselector: {app: web}") == {}
    assert _problems(load, SVC, "type: ExternalName\nexternalName: db.example.com") == {}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("ports: []", "spec.ports", "at least one port"),
        ("ports: [{name: http, port: 80}, {port: 81}]", "spec.ports[1].name", "required"),
        (
            "ports: [{name: http, port: 80}, {name: http, port: 81}]",
            "spec.ports[1].name",
            "duplicate port name",
        ),
        (
            "ports: [{name: a, port: 80}, {name: b, port: 80}]",
            "spec.ports[1].port",
            "duplicate port",
        ),
        ("ports: [{port: 65536}]", "spec.ports[0].port", "out of range"),
        ("ports: [{port: 80, targetPort: 'Not_A_Name'}]", "spec.ports[0].targetPort", "neither"),
        ("ports: [{port: 80}]\nclusterIP: 10.0.0.300", "spec.clusterIP", "not a valid IP"),
        ("type: ExternalName", "spec.externalName", "needs externalName"),
        (
            "ports: [{port: 80}]\nselector: {'app/x/y': web}",
            "spec.selector.app/x/y",
            "invalid label key",
        ),
    ],
)
def test_bad_services(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, SVC, spec)
    assert field in problems, problems
    assert problems[field][0] and fragment in problems[field][1]


def test_service_name_must_be_dns_label(load: Loader) -> None:
    result = load(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web.v1}\nspec: {ports: [{port: 80}]}\n"
    )
    assert [d.field for d in result.diagnostics] == ["metadata.name"]


def test_metadata_namespace_must_be_dns_label(load: Loader) -> None:
    result = load(WE + "  address: 10.0.0.1\n").diagnostics
    assert result == ()
    bad = load(WE.replace("{name: vm}", "{name: vm, namespace: Prod}") + "  address: 10.0.0.1\n")
    assert [d.field for d in bad.diagnostics] == ["metadata.namespace"]
