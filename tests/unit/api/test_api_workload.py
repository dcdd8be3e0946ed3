"""The ``pilotfish.io/v1alpha1`` Workload kind: schema, defaults and validation rules."""

from __future__ import annotations

import pytest
from api_testing import Loader

from pilotfish.api.kinds import API_VERSIONS, PREFERRED_API_VERSION, kind_for_plural, plural
from pilotfish.api.runtime import WorkloadSpec

HEAD = """
apiVersion: pilotfish.io/v1alpha1
kind: Workload
metadata:
  name: web-v1
  labels: {app: web, version: v1}
spec:
"""


def _load(load: Loader, spec: str) -> tuple[WorkloadSpec | None, dict[str, tuple[bool, str]]]:
    text = HEAD + "\n".join("  " + line for line in spec.strip("\n").splitlines()) + "\n"
    result = load(text)
    problems = {d.field: (d.is_error, d.message) for d in result.diagnostics}
    spec_obj = result.resources[0].spec if result.resources else None
    assert spec_obj is None or isinstance(spec_obj, WorkloadSpec)
    return spec_obj, problems


def test_kind_registration() -> None:
    assert API_VERSIONS["Workload"] == frozenset({"pilotfish.io/v1alpha1"})
    assert PREFERRED_API_VERSION["Workload"] == "pilotfish.io/v1alpha1"
    assert PREFERRED_API_VERSION["Service"] == "v1"
    assert PREFERRED_API_VERSION["VirtualService"] == "networking.istio.io/v1"
    assert plural("Workload") == "workloads"
    assert kind_for_plural("workloads") == "Workload"
    assert kind_for_plural("workload") == "Workload"


def test_minimal_workload_gets_defaults(load: Loader) -> None:
    spec, problems = _load(load, "command: [python, -m, app]")
    assert problems == {}
    assert spec is not None
    assert spec.replicas == 1
    assert spec.service_account == "default"
    assert spec.command == ["python", "-m", "app"]
    assert spec.env == [] and spec.ports == []
    assert spec.readiness_probe is None
    assert spec.restart_policy == "Always"


def test_full_workload_in_camel_case(load: Loader) -> None:
    spec, problems = _load(
        load,
        """
replicas: 3
serviceAccount: bookinfo-web
command: ["python", "-m", "web", "--flag"]
env:
- {name: SERVICE_VERSION, value: v2}
- {name: EMPTY}
ports:
- {name: http, containerPort: 9080}
- {name: metrics, containerPort: 9090, protocol: UDP}
readinessProbe:
  httpGet: {path: /health, port: http}
  initialDelaySeconds: 2
  timeoutSeconds: 3
  failureThreshold: 4
  successThreshold: 2
restartPolicy: Never
""",
    )
    assert problems == {}
    assert spec is not None
    assert spec.replicas == 3 and spec.service_account == "bookinfo-web"
    assert spec.env_dict() == {"SERVICE_VERSION": "v2", "EMPTY": ""}
    assert [(p.name, p.container_port, p.protocol) for p in spec.ports] == [
        ("http", 9080, "TCP"),
        ("metrics", 9090, "UDP"),
    ]
    probe = spec.readiness_probe
    assert probe is not None and probe.http_get is not None
    assert probe.http_get.path == "/health" and probe.port == "http"
    assert spec.port_number(probe.port) == 9080
    assert spec.port_number("nope") is None and spec.port_number(81) == 81
    assert probe.tcp_socket is None
    assert (probe.initial_delay_seconds, probe.period_seconds, probe.timeout_seconds) == (2, 1, 3)
    assert (probe.failure_threshold, probe.success_threshold) == (4, 2)
    assert spec.restart_policy == "Never"


def test_tcp_probe_on_a_port_number(load: Loader) -> None:
    spec, problems = _load(load, "command: [app]\nreadinessProbe: {tcpSocket: {port: 5432}}")
    assert problems == {}
    assert spec is not None and spec.readiness_probe is not None
    assert spec.readiness_probe.port == 5432 and spec.readiness_probe.period_seconds == 1


def test_labels_come_from_metadata(load: Loader) -> None:
    result = load(HEAD + "  command: [app]\n")
    assert result.resources[0].metadata.labels == {"app": "web", "version": "v1"}


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        # Schema errors (types, required, enums, unknown fields).
        ("replicas: 1", "spec.command", "required"),
        ("command: [app]\nrestartPolicy: Sometimes", "spec.restartPolicy", ""),
        ("command: [app]\nports: [{name: http, containerPort: 80, protocol: ICMP}]", "", ""),
        ("command: [app]\nimage: nginx", "spec.image", ""),
        ("command: [app]\nenv: [{value: x}]", "spec.env[0].name", "required"),
        # Semantic rules.
        ("command: []", "spec.command", "non-empty"),
        ("command: ['']", "spec.command[0]", "must not be empty"),
        ("command: [app]\nreplicas: -1", "spec.replicas", "negative"),
        ("command: [app]\nserviceAccount: Bad_SA", "spec.serviceAccount", "DNS-1123"),
        ("command: [app]\nenv: [{name: 1ABC, value: x}]", "spec.env[0].name", "invalid"),
        ("command: [app]\nenv: [{name: 'A=B'}]", "spec.env[0].name", "invalid"),
        (
            "command: [app]\nports: [{name: HTTP, containerPort: 80}]",
            "spec.ports[0].name",
            "port name",
        ),
        (
            "command: [app]\nports: [{name: this-name-is-too-long, containerPort: 80}]",
            "spec.ports[0].name",
            "port name",
        ),
        (
            "command: [app]\nports: [{name: '123', containerPort: 80}]",
            "spec.ports[0].name",
            "letter",
        ),
        (
            "command: [app]\nports: [{name: a--b, containerPort: 80}]",
            "spec.ports[0].name",
            "repeat",
        ),
        (
            "command: [app]\nports: [{name: http, containerPort: 80},"
            " {name: http, containerPort: 81}]",
            "spec.ports[1].name",
            "duplicate port name",
        ),
        (
            "command: [app]\nports: [{containerPort: 0}]",
            "spec.ports[0].containerPort",
            "out of range",
        ),
        (
            "command: [app]\nports: [{containerPort: 65536}]",
            "spec.ports[0].containerPort",
            "out of range",
        ),
        (
            "command: [app]\nports: [{name: a, containerPort: 80}, {name: b, containerPort: 80}]",
            "spec.ports[1].containerPort",
            "duplicate containerPort",
        ),
        (
            "command: [app]\nreadinessProbe: {periodSeconds: 2}",
            "spec.readinessProbe",
            "exactly one",
        ),
        (
            "command: [app]\nreadinessProbe: {httpGet: {port: 80}, tcpSocket: {port: 80}}",
            "spec.readinessProbe",
            "httpGet and tcpSocket",
        ),
        (
            "command: [app]\nports: [{name: http, containerPort: 80}]\n"
            "readinessProbe: {httpGet: {path: /h, port: web}}",
            "spec.readinessProbe.httpGet.port",
            "not the name of a container port (known: http)",
        ),
        (
            "command: [app]\nreadinessProbe: {tcpSocket: {port: db}}",
            "spec.readinessProbe.tcpSocket.port",
            "no port is named",
        ),
        (
            "command: [app]\nreadinessProbe: {tcpSocket: {port: 70000}}",
            "spec.readinessProbe.tcpSocket.port",
            "out of range",
        ),
        (
            "command: [app]\nreadinessProbe: {httpGet: {path: health, port: 80}}",
            "spec.readinessProbe.httpGet.path",
            "start with '/'",
        ),
        (
            "command: [app]\nreadinessProbe: {tcpSocket: {port: 80}, periodSeconds: 0}",
            "spec.readinessProbe.periodSeconds",
            "at least 1",
        ),
        (
            "command: [app]\nreadinessProbe: {tcpSocket: {port: 80}, initialDelaySeconds: -1}",
            "spec.readinessProbe.initialDelaySeconds",
            "at least 0",
        ),
    ],
)
def test_bad_workloads(load: Loader, spec: str, field: str, fragment: str) -> None:
    loaded, problems = _load(load, spec)
    assert loaded is None, "a workload with errors must not load"
    if field:
        assert field in problems, problems
        is_error, message = problems[field]
        assert is_error and fragment in message, message
    else:
        assert any(is_error for is_error, _ in problems.values()), problems


def test_repeated_env_name_is_a_warning(load: Loader) -> None:
    spec, problems = _load(
        load, "command: [app]\nenv: [{name: A, value: '1'}, {name: A, value: '2'}]"
    )
    assert spec is not None, "warnings do not stop loading"
    assert problems == {
        "spec.env[1].name": (False, "environment variable 'A' is set twice; the last wins")
    }
    assert spec.env_dict() == {"A": "2"}


def test_diagnostics_point_at_the_line(load: Loader) -> None:
    result = load(HEAD + "  command: [app]\n  replicas: -2\n")
    (diagnostic,) = result.diagnostics
    assert diagnostic.source is not None and diagnostic.source.line == 8
    assert diagnostic.kind == "Workload" and diagnostic.name == "web-v1"


def test_wrong_api_version_is_rejected(load: Loader) -> None:
    result = load(
        HEAD.replace("pilotfish.io/v1alpha1", "networking.istio.io/v1") + "  command: [a]\n"
    )
    assert not result.ok and not result.resources


def test_security_context_is_read_in_camel_case(load: Loader) -> None:
    spec, problems = _load(
        load,
        """
command: [app]
securityContext: {runAsUser: 4242, runAsGroup: 4343, runAsNonRoot: true}
""",
    )
    assert problems == {}
    assert spec is not None and spec.security_context is not None
    assert spec.security_context.run_as_user == 4242
    assert spec.security_context.run_as_group == 4343


@pytest.mark.parametrize(
    ("context", "field", "fragment"),
    [
        ("{runAsUser: 0}", "spec.securityContext.runAsUser", "never run as root"),
        ("{runAsGroup: 0}", "spec.securityContext.runAsGroup", "never run as root"),
        ("{runAsUser: 1337}", "spec.securityContext.runAsUser", "sidecar proxy"),
        ("{runAsGroup: 1337}", "spec.securityContext.runAsGroup", "sidecar proxy"),
        ("{runAsUser: 200005}", "spec.securityContext.runAsUser", "another pod's"),
        ("{runAsUser: -3}", "spec.securityContext.runAsUser", "must be in 1.."),
    ],
)
def test_security_context_refuses_root_the_proxy_and_pod_ids(
    load: Loader, context: str, field: str, fragment: str
) -> None:
    _, problems = _load(load, f"command: [app]\nsecurityContext: {context}")
    is_error, message = problems[field]
    assert is_error and fragment in message


def test_run_as_non_root_false_is_a_warning(load: Loader) -> None:
    _, problems = _load(load, "command: [app]\nsecurityContext: {runAsNonRoot: false}")
    is_error, message = problems["spec.securityContext.runAsNonRoot"]
    assert not is_error and "no effect" in message
