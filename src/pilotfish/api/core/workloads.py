"""Kubernetes workload kinds: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet and Job.

Theory of operation: these are real manifests with hundreds of possible
fields. Pilotfish models only what the mesh reads, and type-checks it:

- the pod's labels and annotations (a Pod's ``metadata``, else the pod
  template's ``spec.template.metadata``): Services, DestinationRule subsets,
  Sidecars and policies select pods by them;
- ``serviceAccountName``: the workload's identity;
- each container's ``ports`` (name, number, protocol): port naming decides the
  protocol Istio assumes;
- ``replicas`` and ``selector``.

Every other field (resources, volumes, probes, strategy...) is accepted as
written (``extra="allow"``) and ignored, so the manifests users already have
load without "unknown field" errors.

``pod_templates(resource)`` gives one ``PodTemplateView`` per loaded workload,
whatever its kind, so analyzers see Pods and templates the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from pilotfish.api.base import ApiModel
from pilotfish.api.resource import Resource

__all__ = [
    "API_VERSIONS",
    "WORKLOAD_KINDS",
    "Container",
    "ContainerPort",
    "DaemonSetSpec",
    "DeploymentSpec",
    "JobSpec",
    "LabelSelector",
    "PodSpec",
    "PodTemplate",
    "PodTemplateView",
    "ReplicaSetSpec",
    "StatefulSetSpec",
    "TemplateMeta",
    "pod_template",
]


class _Open(ApiModel):
    """A Kubernetes object part of which Pilotfish models only some fields."""

    model_config = ConfigDict(extra="allow")


class ContainerPort(_Open):
    name: str | None = None
    container_port: int
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class Container(_Open):
    name: str
    image: str | None = None
    ports: list[ContainerPort] = Field(default_factory=list)


class PodSpec(_Open):
    containers: list[Container] = Field(default_factory=list)
    init_containers: list[Container] = Field(default_factory=list)
    service_account_name: str | None = None
    # The deprecated spelling; Kubernetes uses it when serviceAccountName is unset.
    service_account: str | None = None

    @property
    def account(self) -> str:
        """The ServiceAccount the pod runs as (``default`` when none is named)."""
        return self.service_account_name or self.service_account or "default"


class TemplateMeta(_Open):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class PodTemplate(_Open):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: PodSpec = Field(default_factory=PodSpec)


class LabelSelectorRequirement(_Open):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(_Open):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class DeploymentSpec(_Open):
    replicas: int = 1
    selector: LabelSelector | None = None
    template: PodTemplate = Field(default_factory=PodTemplate)


class StatefulSetSpec(DeploymentSpec):
    pass


class ReplicaSetSpec(DeploymentSpec):
    pass


class DaemonSetSpec(_Open):
    selector: LabelSelector | None = None
    template: PodTemplate = Field(default_factory=PodTemplate)


class JobSpec(_Open):
    parallelism: int | None = None
    completions: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplate = Field(default_factory=PodTemplate)


#: Workload kind -> spec schema (Pod's spec is the pod spec itself).
WORKLOAD_KINDS: Final[MappingProxyType[str, type[BaseModel]]] = MappingProxyType(
    {
        "Pod": PodSpec,
        "Deployment": DeploymentSpec,
        "StatefulSet": StatefulSetSpec,
        "DaemonSet": DaemonSetSpec,
        "ReplicaSet": ReplicaSetSpec,
        "Job": JobSpec,
    }
)

#: Workload kind -> apiVersions accepted for it.
API_VERSIONS: Final[MappingProxyType[str, frozenset[str]]] = MappingProxyType(
    {
        "Pod": frozenset({"v1"}),
        "Deployment": frozenset({"apps/v1"}),
        "StatefulSet": frozenset({"apps/v1"}),
        "DaemonSet": frozenset({"apps/v1"}),
        "ReplicaSet": frozenset({"apps/v1"}),
        "Job": frozenset({"batch/v1"}),
    }
)


@dataclass(frozen=True, slots=True)
class PodTemplateView:
    """The pods a workload makes, as the mesh sees them.

    ``path`` is the field path of the pod spec in the document (``spec`` for a
    Pod, ``spec.template.spec`` otherwise), ``labels_path`` that of the labels,
    so diagnostics point at the user's lines.
    """

    labels: MappingProxyType[str, str]
    annotations: MappingProxyType[str, str]
    spec: PodSpec
    path: str
    labels_path: str


def pod_template(resource: Resource) -> PodTemplateView | None:
    """The pod view of a Kubernetes workload resource (None for other kinds)."""
    kind, spec = resource.kind, resource.spec
    if isinstance(spec, PodSpec) and kind == "Pod":
        return PodTemplateView(
            MappingProxyType(dict(resource.metadata.labels)),
            MappingProxyType(dict(resource.metadata.annotations)),
            spec,
            "spec",
            "metadata.labels",
        )
    template = getattr(spec, "template", None)
    if kind in WORKLOAD_KINDS and isinstance(template, PodTemplate):
        return PodTemplateView(
            MappingProxyType(dict(template.metadata.labels)),
            MappingProxyType(dict(template.metadata.annotations)),
            template.spec,
            "spec.template.spec",
            "spec.template.metadata.labels",
        )
    return None
