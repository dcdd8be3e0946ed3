from __future__ import annotations

import pytest
from api_testing import Loader

HEAD = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
"""


def _problems(load: Loader, spec: str) -> dict[str, tuple[bool, str]]:
    result = load(HEAD + "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n")
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


@pytest.mark.parametrize(
    "spec",
    [
        "hosts: [api.example.com]\nports: [{number: 443, name: https, protocol: TLS}]\nresolution: "
        "DNS",
        "hosts: [db.internal]\naddresses: [10.0.0.0/24]\nports: [{number: 5432, name: pg, "
        "protocol: "
        "TCP}]\n"
        "resolution: STATIC\nendpoints: [{address: 10.0.0.5}, {address: 10.0.0.6, ports: {pg: "
        "6432}}]",
        "hosts: [legacy.example.com]\nports: [{number: 80, name: http, protocol: "
        "HTTP}]\nresolution: DNS\n"
        "endpoints: [{address: legacy-1.example.com}]",
        "hosts: ['*.example.com']\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: "
        "NONE",
        "hosts: [vm.local]\nports: [{number: 80, name: http}]\nresolution: STATIC\n"
        "workloadSelector: {labels: {app: vm}}",
    ],
)
def test_good_service_entries(load: Loader, spec: str) -> None:
    assert _problems(load, spec) == {}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("hosts: []\nresolution: NONE", "spec.hosts", "at least one host"),
        ("hosts: ['*']", "spec.hosts[0]", "not a valid"),
        (
            "hosts: [a.com]\nresolution: NONE\nendpoints: [{address: 1.2.3.4}]",
            "spec.endpoints",
            "no endpoints",
        ),
        (
            "hosts: [a.com]\nresolution: STATIC\nendpoints: [{address: a.example.com}]",
            "spec.endpoints[0].address",
            "not an IP address",
        ),
        (
            "hosts: [a.com]\nresolution: DNS\nendpoints: [{address: 'not a host!'}]",
            "spec.endpoints[0].address",
            "not an IP address or DNS name",
        ),
        (
            "hosts: [a.com]\nresolution: DNS_ROUND_ROBIN\nendpoints: [{address: a.com}, {address: "
            "b.com}]",
            "spec.endpoints",
            "at most one endpoint",
        ),
        (
            "hosts: [a.com]\nresolution: STATIC\nendpoints: [{address: "
            "1.1.1.1}]\nworkloadSelector: "
            "{labels: {a: b}}",
            "spec.workloadSelector",
            "mutually exclusive",
        ),
        (
            "hosts: ['*.a.com']\nresolution: DNS\nports: [{number: 80, name: http, protocol: "
            "HTTP}]",
            "spec.hosts[0]",
            "full DNS names",
        ),
        (
            "hosts: [a.com]\nports: [{number: 80, name: http}, {number: 81, name: http}]",
            "spec.ports[1].name",
            "already defined",
        ),
        (
            "hosts: [a.com]\nports: [{number: 80, name: http}, {number: 80, name: web}]",
            "spec.ports[1].number",
            "already defined",
        ),
        (
            "hosts: [a.com]\nports: [{number: 80, name: http, protocol: FTP}]",
            "spec.ports[0].protocol",
            "unsupported",
        ),
        ("hosts: [a.com]\naddresses: [300.1.1.1]", "spec.addresses[0]", "not a valid IP"),
        (
            "hosts: [a.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\nendpoints: "
            "[{address: 1.1.1.1, ports: {web: 8080}}]",
            "spec.endpoints[0].ports.web",
            "not a port of the ServiceEntry",
        ),
        (
            "hosts: [a.com, b.com]\nports: [{number: 5432, name: pg, protocol: TCP}]\nresolution: "
            "DNS",
            "spec.ports[0].protocol",
            "HTTP or TLS",
        ),
    ],
)
def test_bad_service_entries(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, spec)
    assert field in problems, problems
    is_error, message = problems[field]
    assert is_error and fragment in message


def test_static_without_endpoints_is_a_warning(load: Loader) -> None:
    problems = _problems(load, "hosts: [a.com]\nresolution: STATIC")
    assert problems["spec.resolution"][0] is False


def test_resolution_enum(load: Loader) -> None:
    problems = _problems(load, "hosts: [a.com]\nresolution: dns")
    assert problems["spec.resolution"][0] is True
