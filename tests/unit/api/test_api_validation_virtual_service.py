from __future__ import annotations

import pytest
from api_testing import Loader

HEAD = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
"""


def _problems(load: Loader, spec: str) -> dict[str, tuple[bool, str]]:
    result = load(HEAD + "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n")
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


GOOD = """
hosts: [reviews]
http:
- route:
  - destination: {host: reviews, subset: v1}
"""


def test_good_virtual_service_has_no_findings(load: Loader) -> None:
    assert _problems(load, GOOD) == {}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        (
            "hosts: [bad_host!]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "invalid host",
        ),
        (
            "hosts: ['*']\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.hosts[0]",
            "not allowed",
        ),
        ("hosts: [a]", "spec", "at least one of http, tcp or tls"),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a, port: {number: 70000}}}]}]",
            "spec.http[0].route[0].destination.port.number",
            "out of range",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: -1}]}]",
            "spec.http[0].route[0].weight",
            "negative",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}, weight: 0}, {destination: {host: "
            "b}, weight: 0}]}]",
            "spec.http[0].route",
            "total destination weight is 0",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], timeout: 5 seconds}]",
            "spec.http[0].timeout",
            "invalid duration",
        ),
        (
            "hosts: [a]\nhttp: [{match: [{uri: {regex: '(unclosed'}}], route: [{destination: "
            "{host: "
            "a}}]}]",
            "spec.http[0].match[0].uri.regex",
            "invalid regular expression",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: -2}}]",
            "spec.http[0].retries.attempts",
            "negative",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], retries: {attempts: 1, "
            "retryOn: "
            "'bogus'}}]",
            "spec.http[0].retries.retryOn",
            "not a valid retryOn",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], redirect: {uri: /x}}]",
            "spec.http[0].redirect",
            "mutually exclusive",
        ),
        (
            "hosts: [a]\nhttp: [{redirect: {uri: /x}, directResponse: {status: 503}}]",
            "spec.http[0].directResponse",
            "mutually exclusive",
        ),
        ("hosts: [a]\nhttp: [{match: [{uri: {exact: /}}]}]", "spec.http[0]", "needs one of route"),
        (
            "hosts: [a]\nhttp: [{directResponse: {status: 99}}]",
            "spec.http[0].directResponse.status",
            "not in range",
        ),
        (
            "hosts: [a]\nhttp: [{redirect: {uri: /x, redirectCode: 200}}]",
            "spec.http[0].redirect.redirectCode",
            "3xx",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a, subset: V_1}}]}]",
            "spec.http[0].route[0].destination.subset",
            "DNS-1123",
        ),
        (
            "hosts: [a]\ngateways: [bad/ns/x/Y]\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.gateways[0]",
            "gateway",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {}}]",
            "spec.http[0].fault",
            "abort and/or a delay",
        ),
        (
            "hosts: [a]\nhttp: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: "
            "503, percentage: {value: 101}}}}]",
            "spec.http[0].fault.abort.percentage.value",
            "out of range",
        ),
        ("hosts: [a]\ntcp: [{route: []}]", "spec.tcp[0].route", "at least one destination"),
        (
            "hosts: [a.example.com]\ntls: [{match: [{sniHosts: [b.example.com]}], route: "
            "[{destination: {host: b}}]}]",
            "spec.tls[0].match[0].sniHosts[0]",
            "does not match any host",
        ),
        (
            "hosts: [a]\nexportTo: ['~', '.']\nhttp: [{route: [{destination: {host: a}}]}]",
            "spec.exportTo[0]",
            "cannot be combined",
        ),
    ],
)
def test_bad_virtual_service(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, spec)
    assert field in problems, problems
    is_error, message = problems[field]
    assert is_error and fragment in message


def test_weights_are_relative_and_need_not_sum_to_100(load: Loader) -> None:
    spec = """
hosts: [a]
http:
- route:
  - {destination: {host: a, subset: v1}, weight: 1}
  - {destination: {host: a, subset: v2}, weight: 3}
"""
    assert _problems(load, spec) == {}


def test_wildcard_host_allowed_on_gateway_and_short_gateway_names(load: Loader) -> None:
    spec = """
hosts: ['*']
gateways: [bookinfo-gateway, istio-system/ingress]
http: [{route: [{destination: {host: productpage}}]}]
"""
    assert _problems(load, spec) == {}


def test_delegate_virtual_service_without_hosts(load: Loader) -> None:
    assert _problems(load, "http: [{route: [{destination: {host: a}}]}]") == {}
    problems = _problems(load, "gateways: [gw]\nhttp: [{route: [{destination: {host: a}}]}]")
    assert "delegate" in problems["spec.gateways"][1]


def test_error_points_at_field_line(load: Loader) -> None:
    result = load(
        HEAD + "  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n    timeout: 1x\n"
    )
    (d,) = result.diagnostics
    assert d.source is not None and d.source.line == 9 and d.field == "spec.http[0].timeout"
