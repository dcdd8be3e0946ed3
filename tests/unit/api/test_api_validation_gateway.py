from __future__ import annotations

import pytest
from api_testing import Loader

HEAD = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
"""


def _problems(load: Loader, spec: str) -> dict[str, tuple[bool, str]]:
    result = load(HEAD + "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n")
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


def test_good_gateway(load: Loader) -> None:
    spec = """
selector: {istio: ingressgateway}
servers:
- port: {number: 80, name: http, protocol: HTTP}
  hosts: ['*', 'prod/*.example.com']
  tls: {httpsRedirect: true}
- port: {number: 443, name: https, protocol: HTTPS}
  hosts: [bookinfo.example.com]
  tls: {mode: SIMPLE, credentialName: bookinfo-cert}
"""
    assert _problems(load, spec) == {}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("servers: []", "spec.servers", "at least one server"),
        (
            "servers: [{port: {number: 80, protocol: HTTP}, hosts: []}]",
            "spec.servers[0].hosts",
            "at least one host",
        ),
        (
            "servers: [{port: {number: 0, protocol: HTTP}, hosts: ['*']}]",
            "spec.servers[0].port.number",
            "out of range",
        ),
        (
            "servers: [{port: {number: 80, protocol: SMTP}, hosts: ['*']}]",
            "spec.servers[0].port.protocol",
            "unsupported protocol",
        ),
        (
            "servers: [{port: {number: 443, protocol: HTTPS}, hosts: ['*']}]",
            "spec.servers[0].tls",
            "needs tls",
        ),
        (
            "servers: [{port: {number: 443, protocol: HTTPS}, hosts: ['*'], tls: {mode: MUTUAL, "
            "credentialName: ''}}]",
            "spec.servers[0].tls.caCertificates",
            "needs caCertificates",
        ),
        (
            "servers: [{port: {number: 80, protocol: HTTP}, hosts: ['Bad_NS/x.com']}]",
            "spec.servers[0].hosts[0]",
            "namespace",
        ),
        (
            "servers: [{port: {number: 80, name: web, protocol: HTTP}, hosts: ['*']}, {port: "
            "{number: 81, name: web, protocol: HTTP}, hosts: ['*']}]",
            "spec.servers[1].port.name",
            "another port",
        ),
    ],
)
def test_bad_gateway(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, spec)
    assert field in problems, problems
    is_error, message = problems[field]
    assert is_error and fragment in message


def test_server_port_is_required(load: Loader) -> None:
    problems = _problems(load, "servers: [{hosts: ['*']}]")
    assert problems["spec.servers[0].port"] == (True, "required field missing")
