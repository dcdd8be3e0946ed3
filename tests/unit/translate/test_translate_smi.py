"""SMI conversion (translate/smi.py): TrafficSplit weights and matches walked
through a sidecar's real IR with ``explain``; TrafficTarget policies, checked
on the policies derived and on what the inbound RBAC decides."""

from __future__ import annotations

import textwrap

import pytest

from pilotfish.api.loader import load_text
from pilotfish.api.security.authorization_policy import AuthorizationPolicySpec
from pilotfish.explain.engine import explain
from pilotfish.explain.request import ExplainRequest, parse_header
from pilotfish.model.proxy_view import ProxyView
from pilotfish.model.snapshot import Snapshot, build_snapshot
from pilotfish.translate.smi import istio_path, percentages

CLIENT = ProxyView(
    "sidecar", "default", labels=(("app", "client"),), interception="REDIRECT", bind_ip="0.0.0.0"
)

SERVICES = "".join(
    f"""
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: web{selector}}}
  ports: [{{name: http, port: 9080}}]
"""
    for name, selector in (("web", ""), ("web-v1", ", version: v1"), ("web-v2", ", version: v2"))
)


def _snapshot(text: str) -> Snapshot:
    result = load_text(textwrap.dedent(text).lstrip("\n") + SERVICES, "smi.yaml")
    errors = [d for d in result.diagnostics if d.is_error]
    assert not errors, errors
    return build_snapshot(result.resources, 1)


def _cluster(name: str) -> str:
    return f"outbound|9080||{name}.default.svc.cluster.local"


def _clusters(snapshot: Snapshot, path: str = "/", *headers: str, method: str = "GET"):  # type: ignore[no-untyped-def]
    request = ExplainRequest(
        f"http://web:9080{path}", method, tuple(parse_header(h) for h in headers)
    )
    return dict(explain(snapshot, CLIENT, request).outcome.clusters)


@pytest.mark.parametrize(
    ("weights", "shares"),
    [
        ([1000, 500], [67, 33]),
        ([1, 1, 1], [34, 33, 33]),
        ([90, 10], [90, 10]),
        ([7], [100]),
        ([0, 0], [0, 0]),
    ],
)
def test_weights_become_percentages(weights: list[int], shares: list[int]) -> None:
    assert percentages(weights) == shares


SPLIT = """
apiVersion: split.smi-spec.io/{version}
kind: TrafficSplit
metadata: {{name: canary}}
spec:
  service: web
{matches}
  backends:
  - service: web-v1
    weight: 1000
  - service: web-v2
    weight: 500
  - service: web-v3
    weight: 0
"""


def test_a_split_weights_the_root_service_traffic() -> None:
    snapshot = _snapshot(SPLIT.format(version="v1alpha2", matches=""))
    [vs] = [r for r in snapshot.conversion.resources if r.kind == "VirtualService"]
    assert (vs.namespace, vs.name) == ("default", "canary-smi-split")
    assert vs.metadata.annotations["internal.pilotfish.io/derived-from"] == (
        "TrafficSplit default/canary"
    )
    # Weight 0 backends are left out; 1000:500 is 67 % / 33 %.
    assert _clusters(snapshot) == {_cluster("web-v1"): 67, _cluster("web-v2"): 33}


GROUP = """
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: ab}
spec:
  matches:
  - name: api-reads
    pathRegex: /api
    methods: [GET]
  - name: firefox
    headers: {user-agent: ".*Firefox.*"}
"""


@pytest.mark.parametrize(
    ("path", "method", "headers", "split"),
    [
        ("/api/items", "GET", (), True),  # anchored at the start only
        ("/api", "GET", (), True),
        ("/api/items", "POST", (), False),
        ("/other", "GET", (), False),
        ("/x/api", "GET", (), False),
        ("/other", "GET", ("user-agent: Mozilla/5.0 Firefox/120",), True),
    ],
)
def test_matches_select_what_is_split_and_the_rest_goes_to_the_root(
    path: str, method: str, headers: tuple[str, ...], split: bool
) -> None:
    matches = "  matches:\n  - kind: HTTPRouteGroup\n    name: ab"
    snapshot = _snapshot(SPLIT.format(version="v1alpha4", matches=matches) + GROUP)
    expected = {_cluster("web-v1"): 67, _cluster("web-v2"): 33} if split else {_cluster("web"): 100}
    assert _clusters(snapshot, path, *headers, method=method) == expected


def test_a_missing_route_group_is_reported_and_splits_nothing() -> None:
    matches = "  matches:\n  - kind: HTTPRouteGroup\n    name: nope"
    snapshot = _snapshot(SPLIT.format(version="v1alpha3", matches=matches))
    [warning] = snapshot.conversion.diagnostics
    assert warning.field == "spec.matches[0].name" and "not found" in warning.message
    assert warning.source is not None and warning.source.line == 8
    assert _clusters(snapshot, "/api") == {_cluster("web"): 100}


def test_a_second_split_of_the_same_service_is_ignored_with_a_warning() -> None:
    second = SPLIT.format(version="v1alpha2", matches="").replace("canary", "zz-other")
    snapshot = _snapshot(SPLIT.format(version="v1alpha2", matches="") + "---" + second)
    assert [r.name for r in snapshot.conversion.resources] == ["canary-smi-split"]
    [warning] = snapshot.conversion.diagnostics
    assert warning.name == "zz-other" and "already splits" in warning.message


# -- TrafficTarget ---------------------------------------------------------------------

TARGET = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: api}
---
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata:
  name: api
  labels: {app: api, version: v1}
spec:
  serviceAccount: api
  command: [python, -m, http.server]
  ports: [{name: http, containerPort: 9080}]
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: api-routes}
spec:
  matches:
  - {name: metrics, pathRegex: /metrics, methods: [GET]}
  - {name: items, pathRegex: "^/items/[0-9]+$", methods: ["*"]}
  - {name: everything, pathRegex: ".*", methods: ["*"]}
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: api-port}
spec: {matches: {ports: [9080]}}
---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: api-access}
spec:
  destination: {kind: ServiceAccount, name: api, namespace: default}
  rules:
  - kind: TCPRoute
    name: api-port
  - kind: HTTPRouteGroup
    name: api-routes
    matches: [@MATCHES@]
  sources:
  - {kind: ServiceAccount, name: prometheus, namespace: monitoring}
"""


def _policies(snapshot: Snapshot) -> list[AuthorizationPolicySpec]:
    out = []
    for r in snapshot.conversion.resources:
        if r.kind == "AuthorizationPolicy":
            assert isinstance(r.spec, AuthorizationPolicySpec)
            out.append(r.spec)
    return out


def test_a_target_allows_its_sources_on_its_routes_at_the_destination_workloads() -> None:
    snapshot = _snapshot(TARGET.replace("@MATCHES@", "metrics"))
    [policy] = _policies(snapshot)
    assert policy.action == "ALLOW"
    assert policy.selector is not None
    assert policy.selector.match_labels == {"app": "api", "version": "v1"}
    [rule] = policy.rules
    [source] = rule.from_
    assert source.source is not None
    assert source.source.principals == ["*/ns/monitoring/sa/prometheus"]
    [to] = rule.to
    assert to.operation is not None
    assert (to.operation.paths, to.operation.methods, to.operation.ports) == (
        ["/metrics*"],
        ["GET"],
        ["9080"],
    )


def test_a_regex_that_policies_cannot_express_is_denied_and_reported() -> None:
    snapshot = _snapshot(TARGET.replace("@MATCHES@", "items"))
    [policy] = _policies(snapshot)
    # No rule: an ALLOW policy without rules allows nothing (fail closed).
    assert policy.rules == []
    [warning] = snapshot.conversion.diagnostics
    assert "this match is denied" in warning.message and warning.field == "spec.rules[1]"


def test_everything_means_no_path_condition() -> None:
    snapshot = _snapshot(TARGET.replace("@MATCHES@", "everything"))
    [policy] = _policies(snapshot)
    [rule] = policy.rules
    assert rule.to[0].operation is not None
    assert (rule.to[0].operation.paths, rule.to[0].operation.methods) == ([], [])


def test_a_target_without_workloads_is_reported() -> None:
    text = TARGET.replace("@MATCHES@", "metrics").replace(
        "serviceAccount: api\n", "serviceAccount: x\n"
    )
    snapshot = _snapshot(text)
    assert _policies(snapshot) == []
    [warning] = snapshot.conversion.diagnostics
    assert "protects nothing yet" in warning.message


@pytest.mark.parametrize(
    ("regex", "result"),
    [
        (None, (True, None)),
        (".*", (True, None)),
        ("/metrics", (True, "/metrics*")),
        ("/api/.*", (True, "/api/*")),
        ("^/exact$", (True, "/exact")),
        (r"/v1\.0/x", (True, "/v1.0/x*")),
        ("/items/[0-9]+", (False, None)),
        ("/a|/b", (False, None)),
    ],
)
def test_path_regexes_as_policy_paths(regex: str | None, result: tuple[bool, str | None]) -> None:
    assert istio_path(regex) == result


def test_missing_services_and_ports_are_reported() -> None:
    text = SPLIT.format(version="v1alpha2", matches="").replace(
        "  - service: web-v3\n    weight: 0\n",
        "  - service: web-v3\n    weight: 1\n  - service: web-odd\n    weight: 1\n",
    )
    odd = """
---
apiVersion: v1
kind: Service
metadata: {name: web-odd}
spec:
  ports: [{name: http, port: 1024}]
"""
    snapshot = _snapshot(text + odd)
    found = {d.field: d.message for d in snapshot.conversion.diagnostics}
    assert found == {
        "spec.backends[2].service": "Service default/web-v3 not found: its share fails",
        "spec.backends[3].service": (
            "Service web-odd lacks port(s) [9080] of web: SMI requires every backend to "
            "have the root Service's ports"
        ),
    }
