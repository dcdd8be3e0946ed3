"""Analysis of the Kubernetes manifests around the mesh, as Istio's analyzers check them.

Theory of operation: ``check_workloads(resources)`` builds a ``PodIndex`` (the
pods the configuration declares, plus the runtime's own gateways) and runs
each check below over it. Every finding points at the line of the field
concerned and carries Istio's message code where Istio reports the same
problem. Levels: what Istio calls Info stays info; Istio's cross-resource
errors (IST0101, IST0173) are warnings here, as all of Pilotfish's
cross-resource findings are: configuration arrives in pieces, and a file must
not fail because another one is not analyzed with it.

- a Service whose selector matches no pod of its namespace (only when the
  files declare pods in that namespace; otherwise nothing is known of them);
- a Pod or long-running workload no Service selects (only when the files hold
  Services of its namespace; Jobs are not expected to be selected);
- a DestinationRule subset whose labels, with its Service's selector, match
  no pod (IST0173; only for a Service that does select pods);
- a port whose name does not give its protocol: Service ports without
  ``appProtocol`` (IST0118; IST0150 for an ExternalName Service, and also for
  one named ``tcp``, as Istio), and container ports;
- pods without ``app`` and ``version`` labels (Istio's telemetry and
  version-based routing read them);
- a Kubernetes workload's ``serviceAccountName`` with no ServiceAccount in
  the files (``default`` always exists);
- a Gateway whose selector matches no pod in any namespace, the built-in
  ingress and egress gateways included (IST0101);
- a Namespace whose labels neither enable nor disable sidecar injection
  (``istio-injection``, ``istio.io/rev``, or ambient's
  ``istio.io/dataplane-mode``; IST0102, info). Pilotfish's runtime meshes an
  unlabelled namespace's pods anyway (``translate.ambient.pods``): this is
  about the same files in Istio, whose injector would skip them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.core.workloads import WORKLOAD_KINDS
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.destination_rule import DestinationRuleSpec
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.resource import Resource
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.pod_index import Pod, PodIndex, pods_of
from pilotfish.model.hosts import fqdn
from pilotfish.registry.protocol import KNOWN_PROTOCOL_NAMES

__all__ = ["check_workloads", "follows_port_naming"]

# Kinds whose pods are expected to serve, so to be selected by a Service.
_SERVING_KINDS = (*(k for k in WORKLOAD_KINDS if k != "Job"), "Workload")
_LABELLED_KINDS = (*WORKLOAD_KINDS, "Workload")


def follows_port_naming(name: str | None) -> bool:
    """Istio's convention: ``<protocol>`` or ``<protocol>-<suffix>`` (``http``, ``grpc-api``)."""
    if not name:
        return False
    lowered = name.lower()
    return lowered in KNOWN_PROTOCOL_NAMES or lowered.split("-", 1)[0] in KNOWN_PROTOCOL_NAMES


def check_workloads(
    resources: Sequence[Resource], domain_suffix: str = "cluster.local"
) -> list[Diagnostic]:
    """Every finding of the checks above over ``resources`` (loaded without errors)."""
    index = PodIndex(resources)
    services = [r for r in resources if isinstance(r.spec, ServiceSpec)]
    accounts = {(r.namespace, r.name) for r in resources if r.kind == "ServiceAccount"}
    found: list[Diagnostic] = []
    for r in services:
        found += _check_service(r, index)
    if services:
        found += _unselected_pods(index, services)
    for pod in pods_of(index, _LABELLED_KINDS):
        found += _check_pod(pod, accounts)
    for r in resources:
        if isinstance(r.spec, DestinationRuleSpec):
            found += _check_subsets(r, r.spec, services, index, domain_suffix)
        elif isinstance(r.spec, GatewaySpec):
            found += _check_gateway(r, r.spec, index)
        elif r.kind == "Namespace":
            found += _check_namespace(r)
    return found


# Namespaces Istio's injection analyzer leaves alone.
_SYSTEM_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "local-path-storage", "istio-system"}
)
_INJECTION_LABELS = ("istio-injection", "istio.io/rev", "istio.io/dataplane-mode")


def _check_namespace(r: Resource) -> list[Diagnostic]:
    f = Findings(r)
    labels = r.metadata.labels
    if r.name not in _SYSTEM_NAMESPACES and not any(k in labels for k in _INJECTION_LABELS):
        f.info(
            "metadata.labels" if labels else "metadata",
            f"namespace {r.name} is not enabled for Istio injection: label it "
            "istio-injection=enabled, or istio-injection=disabled if it needs no sidecars",
            "IST0102",
        )
    return f.items


def _check_service(r: Resource, index: PodIndex) -> list[Diagnostic]:
    spec = r.spec
    assert isinstance(spec, ServiceSpec)
    f = Findings(r)
    # Istio's own Services (an ``istio`` label) are spared the naming checks.
    named_ports = [] if _is_istio_control_plane(r) else list(enumerate(spec.ports))
    for i, port in named_ports:
        if spec.type == "ExternalName":
            if not follows_port_naming(port.name) or port.name == "tcp":
                # IST0150: sidecars cannot forward such a port's TCP traffic to the name.
                f.warning(
                    f"spec.ports[{i}].name" if port.name else f"spec.ports[{i}]",
                    f"port {port.name or '(unnamed)'} ({port.port}) of an ExternalName "
                    "Service: name it by protocol (not tcp), or its TCP traffic may not be "
                    "forwarded",
                    "IST0150",
                )
            continue
        if not port.app_protocol and not follows_port_naming(port.name):
            target = port.target_port if port.target_port is not None else port.port
            f.info(
                f"spec.ports[{i}].name" if port.name else f"spec.ports[{i}]",
                f"port {port.name or '(unnamed)'} ({port.port}, targetPort {target}) is not "
                "named <protocol>[-suffix] and has no appProtocol: protocol detection applies",
                "IST0118",
            )
    declared = any(p.namespace == r.namespace for p in index.declared)
    selector = spec.selector if spec.type != "ExternalName" and declared else None
    if selector and not index.selected(selector, r.namespace):
        f.warning(
            "spec.selector",
            f"selects no pods in namespace {r.namespace}: no Pod, "
            f"workload template, Workload or WorkloadEntry has labels {_show(selector)}",
        )
    return f.items


def _is_istio_control_plane(r: Resource) -> bool:
    labels = r.metadata.labels
    return "istio" in labels or labels.get("release") == "istio"


def _unselected_pods(index: PodIndex, services: Sequence[Resource]) -> list[Diagnostic]:
    selectors = [
        (r.namespace, dict(r.spec.selector))
        for r in services
        if isinstance(r.spec, ServiceSpec) and r.spec.selector
    ]
    namespaces = {r.namespace for r in services}
    found: list[Diagnostic] = []
    for pod in pods_of(index, _SERVING_KINDS):
        if pod.namespace not in namespaces:
            continue  # no Service of its namespace is in the files
        if any(ns == pod.namespace and _selects(sel, pod) for ns, sel in selectors):
            continue
        assert pod.resource is not None
        f = Findings(pod.resource)
        f.warning(pod.labels_path, f"no Service selects these pods (labels {_show(pod.labels)})")
        found += f.items
    return found


def _selects(selector: Mapping[str, str], pod: Pod) -> bool:
    return all(pod.labels.get(k) == v for k, v in selector.items())


def _check_pod(pod: Pod, accounts: set[tuple[str, str]]) -> list[Diagnostic]:
    assert pod.resource is not None
    f = Findings(pod.resource)
    missing = [label for label in ("app", "version") if label not in pod.labels]
    if missing:
        f.info(
            pod.labels_path,
            f"pods have no {' and no '.join(repr(m) for m in missing)} label: Istio's metrics, "
            "traces and version-based routing use app and version",
        )
    for path, port in pod.ports:
        if not follows_port_naming(port.name):
            f.info(
                f"{path}.name" if port.name else path,
                f"container port {port.name or '(unnamed)'} ({port.container_port}) is not "
                "named <protocol>[-suffix]: name the Service port that targets it by protocol",
                "IST0118",
            )
    # A Pilotfish Workload's serviceAccount is its identity itself (no ServiceAccount
    # object exists in the local mesh), and a WorkloadEntry's names a remote one.
    account = pod.service_account
    checked = pod.resource.kind in WORKLOAD_KINDS and account != "default"
    if checked and (pod.namespace, account) not in accounts:
        field = f"{pod.spec_path}.serviceAccountName"
        f.warning(field, f"ServiceAccount {pod.namespace}/{account} does not exist")
    return f.items


def _check_subsets(
    r: Resource,
    spec: DestinationRuleSpec,
    services: Sequence[Resource],
    index: PodIndex,
    suffix: str,
) -> list[Diagnostic]:
    host = fqdn(spec.host, r.namespace, suffix)
    service = next((s for s in services if f"{s.name}.{s.namespace}.svc.{suffix}" == host), None)
    if service is None or not isinstance(service.spec, ServiceSpec) or not service.spec.selector:
        return []
    selector = service.spec.selector
    if not index.selected(selector, service.namespace):
        return []  # the Service selects nothing at all: reported on the Service
    f = Findings(r)
    for i, subset in enumerate(spec.subsets):
        if subset.labels and not index.selected({**selector, **subset.labels}, service.namespace):
            f.warning(
                f"spec.subsets[{i}].labels",
                f"subset {subset.name} selects no pods of Service {service.namespace}/"
                f"{service.name} (labels {_show({**selector, **subset.labels})}): "
                "requests for it fail with 503 (no healthy upstream)",
                "IST0173",
            )
    return f.items


def _check_gateway(r: Resource, spec: GatewaySpec, index: PodIndex) -> list[Diagnostic]:
    f = Findings(r)
    if spec.selector and not index.selected(spec.selector, None):
        f.warning(
            "spec.selector",
            f"selector {_show(spec.selector)} matches no gateway pod (the local runtime's "
            "gateways are labelled istio=ingressgateway and istio=egressgateway)",
            "IST0101",
        )
    return f.items


def _show(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
