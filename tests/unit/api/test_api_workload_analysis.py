"""The Kubernetes-manifest analyzers of ``analyze``: each finding, its line and its code."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pilotfish.api.analyze import analyze_paths
from pilotfish.api.diagnostics import Diagnostic, Severity
from pilotfish.api.validation.pod_index import BUILTIN_GATEWAYS
from pilotfish.api.validation.workload_analysis import follows_port_naming
from pilotfish.runtime import gateways

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata:
      labels: {labels}
    spec:
      serviceAccountName: {account}
      containers:
        - name: app
          ports:
            - {{name: {port}, containerPort: 9080}}
"""


def _deployment(
    name: str, app: str, labels: str = "", account: str = "default", port: str = "http"
) -> str:
    return DEPLOYMENT.format(
        name=name,
        app=app,
        labels=labels or f"{{app: {app}, version: v1}}",
        account=account,
        port=port,
    )


def _service(name: str, selector: str, port: str = "http") -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
        f"spec:\n  selector: {selector}\n  ports: [{{name: {port}, port: 9080}}]\n"
    )


def _analyze(tmp_path: Path, *docs: str) -> list[Diagnostic]:
    path = tmp_path / "app.yaml"
    path.write_text("---\n".join(textwrap.dedent(d) for d in docs))
    return analyze_paths([str(path)])


def _lines(found: list[Diagnostic]) -> list[tuple[str, int, str, str]]:
    return sorted(
        (d.severity.value, d.source.line if d.source else 0, d.field, d.code) for d in found
    )


def test_matching_service_and_deployment_are_clean(tmp_path: Path) -> None:
    sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n"
    found = _analyze(
        tmp_path, _service("web", "{app: web}"), _deployment("web", "web", account="web"), sa
    )
    assert found == []


def test_service_selecting_no_pods_and_pods_no_service_selects(tmp_path: Path) -> None:
    found = _analyze(tmp_path, _service("web", "{app: web}"), _deployment("api", "api"))
    assert _lines(found) == [
        ("warning", 5, "spec.selector", ""),  # the Service (document 1, line 5)
        ("warning", 15, "spec.template.metadata.labels", ""),  # the Deployment's pod labels
    ]
    assert "selects no pods in namespace default" in found[0].message
    assert "no Service selects these pods" in found[1].message


def test_service_alone_is_not_reported_as_selecting_nothing(tmp_path: Path) -> None:
    # No pods declared at all: the pods are elsewhere, nothing is known about them.
    assert _analyze(tmp_path, _service("web", "{app: web}")) == []


def test_pods_without_any_service_in_the_files_are_not_reported(tmp_path: Path) -> None:
    assert _analyze(tmp_path, _deployment("api", "api")) == []


def test_a_service_selects_pilotfish_workloads_and_workload_entries(tmp_path: Path) -> None:
    workload = (
        "apiVersion: pilotfish.io/v1alpha1\nkind: Workload\n"
        "metadata: {name: w, labels: {app: w, version: v1}}\nspec: {command: [x]}\n"
    )
    entry = (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm}\n"
        "spec: {address: 10.0.0.1, labels: {app: vm}}\n"
    )
    found = _analyze(
        tmp_path, _service("w", "{app: w}"), _service("vm", "{app: vm}"), workload, entry
    )
    assert found == []


def test_subset_selecting_no_pods_is_ist0173(tmp_path: Path) -> None:
    dr = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\n"
        "spec:\n  host: web\n  subsets:\n  - name: v1\n    labels: {version: v1}\n"
        "  - name: v2\n    labels: {version: v2}\n"
    )
    found = _analyze(tmp_path, _service("web", "{app: web}"), _deployment("web", "web"), dr)
    assert _lines(found) == [("warning", 32, "spec.subsets[1].labels", "IST0173")]
    assert "subset v2 selects no pods of Service default/web" in found[0].message


def test_port_names_not_following_the_convention_are_ist0118_info(tmp_path: Path) -> None:
    found = _analyze(
        tmp_path, _service("web", "{app: web}", port="web"), _deployment("web", "web", port="main")
    )
    assert _lines(found) == [
        ("info", 6, "spec.ports[0].name", "IST0118"),
        ("info", 21, "spec.template.spec.containers[0].ports[0].name", "IST0118"),
    ]
    assert all(not d.is_error for d in found)


def test_port_naming_convention() -> None:
    assert follows_port_naming("http")
    assert follows_port_naming("grpc-web")
    assert follows_port_naming("tcp-mysql")
    assert follows_port_naming("HTTP2-api")
    assert not follows_port_naming("web")
    assert not follows_port_naming("httpx")
    assert not follows_port_naming(None)


def test_missing_app_and_version_labels(tmp_path: Path) -> None:
    found = _analyze(tmp_path, _deployment("web", "web", labels="{app: web}"))
    assert _lines(found) == [("info", 8, "spec.template.metadata.labels", "")]
    assert "no 'version' label" in found[0].message
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n"
    found = _analyze(tmp_path, pod)
    assert [d.message.split(":")[0] for d in found] == ["pods have no 'app' and no 'version' label"]


def test_service_account_that_does_not_exist(tmp_path: Path) -> None:
    found = _analyze(tmp_path, _deployment("web", "web", account="web-sa"))
    assert _lines(found) == [("warning", 10, "spec.template.spec.serviceAccountName", "")]
    assert found[0].message == "ServiceAccount default/web-sa does not exist"
    other_ns = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web-sa, namespace: other}\n"
    assert len(_analyze(tmp_path, _deployment("web", "web", account="web-sa"), other_ns)) == 1


def test_gateway_selectors_match_builtin_and_declared_gateways(tmp_path: Path) -> None:
    def gateway(name: str, selector: str) -> str:
        return (
            f"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\n"
            f"spec:\n  selector: {selector}\n"
            "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n"
        )

    own = _deployment("edge", "edge", labels="{app: edge, version: v1, gw: edge}")
    found = _analyze(
        tmp_path,
        gateway("ingress", "{istio: ingressgateway}"),
        gateway("egress", "{istio: egressgateway}"),
        gateway("own", "{gw: edge}"),
        gateway("ghost", "{istio: nowhere}"),
        own,
    )
    assert _lines(found) == [("warning", 26, "spec.selector", "IST0101")]
    assert found[0].severity is Severity.WARNING
    assert "istio=nowhere matches no gateway pod" in found[0].message


def test_builtin_gateway_labels_are_the_runtime_s() -> None:
    ingress = dict(BUILTIN_GATEWAYS[0][1])
    assert ingress == {"app": gateways.INGRESS, "istio": "ingressgateway"}
    assert dict(BUILTIN_GATEWAYS[1][1]) == dict(gateways._EGRESS_LABELS)


def test_namespace_injection_labels_ist0102(tmp_path: Path) -> None:
    def namespace(name: str, labels: str) -> str:
        return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {labels}}}\n"

    found = _analyze(
        tmp_path,
        namespace("plain", "{team: a}"),
        namespace("injected", "{istio-injection: enabled}"),
        namespace("opted-out", "{istio-injection: disabled}"),
        namespace("rev", "{istio.io/rev: canary}"),
        namespace("ambient", "{istio.io/dataplane-mode: ambient}"),
        namespace("istio-system", "{}"),
    )
    assert [(d.name, d.code, d.severity) for d in found] == [("plain", "IST0102", Severity.INFO)]
    assert "istio-injection=enabled" in found[0].message
