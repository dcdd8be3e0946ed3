from __future__ import annotations

import pytest
from api_testing import Loader

HEAD = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr}
spec:
"""


def _problems(load: Loader, spec: str) -> dict[str, tuple[bool, str]]:
    result = load(HEAD + "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n")
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


def test_good_destination_rule(load: Loader) -> None:
    spec = """
host: reviews.prod.svc.cluster.local
trafficPolicy:
  loadBalancer:
    consistentHash: {httpCookie: {name: user, ttl: 0s}}
  portLevelSettings:
  - port: {number: 9080}
    tls: {mode: ISTIO_MUTUAL}
subsets:
- {name: v1, labels: {version: v1}}
- name: v2
  labels: {version: v2}
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
"""
    assert _problems(load, spec) == {}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ("host: ''", "spec.host", "must not be empty"),
        ("host: a\nsubsets: [{name: v1}, {name: v1}]", "spec.subsets[1].name", "duplicate subset"),
        ("host: a\nsubsets: [{name: V1}]", "spec.subsets[0].name", "DNS-1123"),
        (
            "host: a\nsubsets: [{name: v1, labels: {'bad key!': x}}]",
            "spec.subsets[0].labels.bad key!",
            "invalid label key",
        ),
        ("host: a\ntrafficPolicy: {}", "spec.trafficPolicy", "at least one field"),
        (
            "host: a\ntrafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: "
            "true}}}",
            "spec.trafficPolicy.loadBalancer",
            "mutually exclusive",
        ),
        (
            "host: a\ntrafficPolicy: {loadBalancer: {consistentHash: {}}}",
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "exactly one hash key",
        ),
        (
            "host: a\ntrafficPolicy: {connectionPool: {tcp: {connectTimeout: soon}}}",
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "invalid duration",
        ),
        (
            "host: a\ntrafficPolicy: {connectionPool: {http: {maxRetries: -1}}}",
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "negative",
        ),
        (
            "host: a\ntrafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}",
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "out of range",
        ),
        (
            "host: a\ntrafficPolicy: {tls: {mode: MUTUAL}}",
            "spec.trafficPolicy.tls.clientCertificate",
            "needs clientCertificate",
        ),
        (
            "host: a\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, caCertificates: /x}}",
            "spec.trafficPolicy.tls",
            "ISTIO_MUTUAL",
        ),
        (
            "host: a\ntrafficPolicy: {portLevelSettings: [{port: {number: 80}, tls: {mode: "
            "SIMPLE}}, {port: {number: 80}, tls: {mode: SIMPLE}}]}",
            "spec.trafficPolicy.portLevelSettings[1].port.number",
            "duplicate",
        ),
        (
            "host: a\ntrafficPolicy: {loadBalancer: {localityLbSetting: {distribute: [{from: "
            "a/b/*, "
            "to: {a/b/*: 60, c/d/*: 30}}]}}}",
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            "not 100",
        ),
    ],
)
def test_bad_destination_rule(load: Loader, spec: str, field: str, fragment: str) -> None:
    problems = _problems(load, spec)
    assert field in problems, problems
    is_error, message = problems[field]
    assert is_error and fragment in message


def test_enum_accepts_istio_names_only(load: Loader) -> None:
    problems = _problems(load, "host: a\ntrafficPolicy: {loadBalancer: {simple: round_robin}}")
    assert "must be" in problems["spec.trafficPolicy.loadBalancer.simple"][1]
