"""Semantic checks of one Kubernetes workload (Pod, Deployment, StatefulSet, DaemonSet,
ReplicaSet, Job), a Namespace and a ServiceAccount, following Kubernetes' own rules
for the fields Pilotfish models.

Only what the mesh reads is checked (container ports, labels, the service
account name, the selector); the API server's other rules are not repeated:
the fields they concern are accepted as written and never used.
"""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.api.core.workloads import ContainerPort, LabelSelector, pod_template
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.workload import check_port_name

__all__ = ["validate", "validate_named"]


def validate_named(resource: Resource) -> list[Diagnostic]:
    """A Namespace or ServiceAccount: its name must be valid where Kubernetes puts it."""
    f = Findings(resource)
    if resource.kind == "Namespace":
        f.add("metadata.name", checks.check_dns1123_label(resource.name, "Namespace name"))
    else:
        f.add("metadata.name", checks.check_dns1123_subdomain(resource.name, "ServiceAccount name"))
    return f.items


def validate(resource: Resource) -> list[Diagnostic]:
    view = pod_template(resource)
    assert view is not None, resource.kind
    f = Findings(resource)
    for p, msg in checks.label_problems(view.labels, view.labels_path):
        f.error(p, msg)
    account = view.spec.service_account_name
    if account:
        f.add(
            f"{view.path}.serviceAccountName",
            checks.check_dns1123_subdomain(account, "serviceAccountName"),
        )
    for group in ("containers", "initContainers"):
        containers = view.spec.containers if group == "containers" else view.spec.init_containers
        for i, container in enumerate(containers):
            _check_ports(f, f"{view.path}.{group}[{i}]", container.ports)
    if resource.kind == "Pod":
        return f.items
    replicas = getattr(resource.spec, "replicas", 0)
    if isinstance(replicas, int) and replicas < 0:
        f.error("spec.replicas", "must not be negative")
    selector = getattr(resource.spec, "selector", None)
    if isinstance(selector, LabelSelector):
        _check_selector(f, selector, dict(view.labels))
    elif resource.kind != "Job":  # a Job's selector is generated; the others need one
        f.error("spec.selector", "required field missing")
    return f.items


def _check_ports(f: Findings, path: str, ports: Sequence[ContainerPort]) -> None:
    names: set[str] = set()
    for j, port in enumerate(ports):
        item = f"{path}.ports[{j}]"
        f.add(f"{item}.containerPort", checks.check_port(port.container_port, "containerPort"))
        if port.name:
            problem = check_port_name(port.name)
            f.add(f"{item}.name", problem)
            if problem is None and port.name in names:
                f.error(f"{item}.name", f"duplicate port name {port.name!r}")
            names.add(port.name)


def _check_selector(f: Findings, selector: LabelSelector, labels: dict[str, str]) -> None:
    """Kubernetes refuses a workload whose selector does not select its own pod template."""
    if not selector.match_labels and not selector.match_expressions:
        f.error("spec.selector", "an empty selector would select every pod; name labels")
        return
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            f.error(
                f"spec.selector.matchLabels.{key}",
                f"selector {key}={value} does not match the pod template's labels",
            )
    for i, expr in enumerate(selector.match_expressions):
        present = expr.key in labels
        matched = {
            "In": present and labels.get(expr.key) in expr.values,
            "NotIn": not present or labels.get(expr.key) not in expr.values,
            "Exists": present,
            "DoesNotExist": not present,
        }[expr.operator]
        if not matched:
            f.error(
                f"spec.selector.matchExpressions[{i}]",
                f"{expr.key} {expr.operator} does not match the pod template's labels",
            )
