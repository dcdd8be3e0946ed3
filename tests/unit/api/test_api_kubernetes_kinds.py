"""Kubernetes core and workload kinds: what loads, what is type-checked, what is ignored."""

from __future__ import annotations

from pathlib import Path

from api_testing import by_field, load_snippet

from pilotfish.api.core.workloads import DeploymentSpec, PodSpec, pod_template
from pilotfish.api.diagnostics import Severity
from pilotfish.api.loader import load_file
from pilotfish.model.snapshot import build_snapshot

WORKLOADS = (
    Path(__file__).resolve().parents[2] / "testdata" / "api" / "kubernetes" / "workloads.yaml"
)


def test_every_workload_kind_loads_with_unmodelled_fields() -> None:
    result = load_file(WORKLOADS)
    assert result.diagnostics == ()
    kinds = [r.kind for r in result.resources]
    assert kinds == [
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "Pod",
    ]


def test_modelled_fields_of_a_deployment() -> None:
    deployment = next(r for r in load_file(WORKLOADS).resources if r.kind == "Deployment")
    spec = deployment.spec
    assert isinstance(spec, DeploymentSpec)
    assert spec.replicas == 2
    assert spec.selector is not None and spec.selector.match_labels == {
        "app": "cart",
        "version": "v1",
    }
    view = pod_template(deployment)
    assert view is not None
    assert dict(view.labels) == {"app": "cart", "version": "v1"}
    assert view.annotations["sidecar.istio.io/inject"] == "true"
    assert view.spec.account == "cart"
    port = view.spec.containers[0].ports[0]
    assert (port.name, port.container_port, port.protocol) == ("http", 9080, "TCP")


def test_pod_view_uses_metadata_labels_and_deprecated_service_account() -> None:
    pod = next(r for r in load_file(WORKLOADS).resources if r.kind == "Pod")
    assert isinstance(pod.spec, PodSpec)
    view = pod_template(pod)
    assert view is not None
    assert dict(view.labels) == {"app": "debug", "version": "v1"}
    assert view.spec.account == "cart"
    assert view.labels_path == "metadata.labels"


def test_modelled_fields_are_type_checked_with_lines() -> None:
    result = load_snippet(
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: many
          selector: {matchLabels: {app: web}}
          template:
            metadata: {labels: {app: web}}
            spec:
              containers:
                - name: web
                  ports:
                    - containerPort: http
                      protocol: HTTP
        """
    )
    found = by_field(result.diagnostics)
    assert found["spec.replicas"].source is not None and found["spec.replicas"].source.line == 5
    port = "spec.template.spec.containers[0].ports[0]"
    assert found[f"{port}.containerPort"].source.line == 13  # type: ignore[union-attr]
    assert f"{port}.protocol" in found
    assert not result.resources


def test_kubernetes_rules_on_modelled_fields() -> None:
    result = load_snippet(
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          selector: {matchLabels: {app: other}}
          template:
            metadata: {labels: {app: web}}
            spec:
              serviceAccountName: Not_Valid
              containers:
                - name: web
                  ports:
                    - {name: http, containerPort: 70000}
                    - {name: http, containerPort: 81}
        """
    )
    found = by_field(result.diagnostics)
    assert "does not match the pod template" in found["spec.selector.matchLabels.app"].message
    assert "spec.template.spec.serviceAccountName" in found
    assert "spec.template.spec.containers[0].ports[0].containerPort" in found
    assert "duplicate" in found["spec.template.spec.containers[0].ports[1].name"].message
    assert all(d.is_error for d in result.diagnostics)


def test_deployment_needs_a_selector_but_a_job_does_not() -> None:
    template = "  template: {metadata: {labels: {app: a}}, spec: {containers: [{name: a}]}}\n"
    deployment = load_snippet(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n" + template
    )
    assert [d.field for d in deployment.diagnostics] == ["spec.selector"]
    job = load_snippet("apiVersion: batch/v1\nkind: Job\nmetadata: {name: a}\nspec:\n" + template)
    assert job.diagnostics == () and len(job.resources) == 1


def test_wrong_api_version_for_a_workload_kind_is_an_error() -> None:
    result = load_snippet("apiVersion: v1\nkind: Deployment\nmetadata: {name: a}\nspec: {}\n")
    assert [d.field for d in result.diagnostics] == ["apiVersion"]
    assert "apps/v1" in result.diagnostics[0].message


def test_config_map_and_service_account_fields_sit_at_the_top_level() -> None:
    result = load_snippet(
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c}
        data: {a: "1"}
        colour: red
        ---
        apiVersion: v1
        kind: ServiceAccount
        metadata: {name: s}
        automountServiceAccountToken: maybe
        """
    )
    assert {d.field for d in result.diagnostics} == {"colour", "automountServiceAccountToken"}


def test_foreign_kinds_are_ignored_with_an_info_message() -> None:
    result = load_snippet(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Application
        metadata: {name: bookinfo, namespace: argocd}
        spec: {anything: [goes]}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata: {name: reader}
        rules: []
        ---
        apiVersion: v1
        kind: PersistentVolumeClaim
        metadata: {name: data}
        spec: {}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec: {ports: [{port: 80}]}
        """
    )
    assert result.ok
    assert [r.kind for r in result.resources] == ["Service"]
    infos = result.diagnostics
    assert [d.severity for d in infos] == [Severity.INFO] * 3
    assert [(d.kind, d.source.line if d.source else 0) for d in infos] == [
        ("Application", 1),
        ("ClusterRole", 6),
        ("PersistentVolumeClaim", 11),
    ]
    assert infos[0].format() == (
        "test.yaml:1: Application argocd/bookinfo: info: "
        "Application (argoproj.io/v1alpha1) is not a mesh kind; ignored"
    )


def test_unknown_kind_of_a_mesh_group_is_still_an_error() -> None:
    result = load_snippet(
        "apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: a}\nspec: {}\n"
        "---\napiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: b}\nspec: {}\n"
    )
    assert [d.is_error for d in result.diagnostics] == [True, True]
    assert "unknown kind 'VirtualServce'" in result.diagnostics[0].message


def test_istio_kinds_pilotfish_does_not_apply_are_named_not_unknown() -> None:
    result = load_snippet(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\n"
        "metadata: {name: rl, namespace: istio-system}\nspec: {configPatches: []}\n"
        "---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n"
        "metadata: {name: w}\nspec: {url: oci://x}\n"
        "---\napiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\n"
        "metadata: {name: i}\nspec: {profile: demo}\n"
    )
    # Nothing stored, nothing refused: each is said to have no effect here.
    assert result.ok and result.resources == ()
    assert [(d.kind, d.severity) for d in result.diagnostics] == [
        ("EnvoyFilter", Severity.WARNING),
        ("WasmPlugin", Severity.WARNING),
        ("IstioOperator", Severity.INFO),
    ]
    assert "applies no EnvoyFilter patches" in result.diagnostics[0].message
    assert result.diagnostics[0].source is not None and result.diagnostics[0].source.line == 1


def test_yaml_that_is_no_manifest_gets_one_clear_error() -> None:
    result = load_snippet("swagger: '2.0'\ninfo: {title: x}\npaths: {}\n")
    assert [d.is_error for d in result.diagnostics] == [True]
    assert result.diagnostics[0].message.startswith(
        "not a Kubernetes manifest: the document has neither apiVersion nor kind"
    )


def test_helm_template_is_refused_naming_the_line() -> None:
    result = load_snippet(
        """
        # a chart's template
        apiVersion: v1
        kind: Service
        metadata:
          name: {{ .Values.name }}
        spec: {ports: [{port: 80}]}
        """
    )
    assert [(d.source.line if d.source else 0) for d in result.diagnostics] == [5]
    assert "template directive" in result.diagnostics[0].message
    assert "helm template" in result.diagnostics[0].message
    control = load_snippet(
        """
        {{- range .Values.items }}
        apiVersion: v1
        {{- end }}
        """
    )
    assert control.diagnostics[0].source is not None and control.diagnostics[0].source.line == 1


def test_braces_inside_quoted_or_block_scalars_are_data() -> None:
    result = load_snippet(
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: dashboards}
        data:
          a.json: "{\\"legendFormat\\": \\"{{ source_workload }}\\"}"
          b.txt: |
            {{ not a template here }}
        """
    )
    assert result.diagnostics == ()
    assert len(result.resources) == 1


def test_namespace_labels_reach_the_snapshot() -> None:
    resources = load_file(WORKLOADS).resources
    snapshot = build_snapshot(resources, revision=1)
    assert snapshot.namespace_labels("shop") == {
        "istio-injection": "enabled",
        "topology.istio.io/network": "net1",
    }
    assert snapshot.namespace_labels("elsewhere") == {}


def test_workload_kinds_leave_the_config_generation_alone() -> None:
    resources = load_file(WORKLOADS).resources
    first = build_snapshot(resources, revision=1)
    without_deployments = [r for r in resources if r.kind != "Deployment"]
    second = build_snapshot(without_deployments, revision=2, previous=first)
    assert second.config_generation == first.config_generation
    relabelled = [r for r in resources if r.kind != "Namespace"]
    third = build_snapshot(relabelled, revision=3, previous=second)
    assert third.config_generation == second.config_generation + 1
