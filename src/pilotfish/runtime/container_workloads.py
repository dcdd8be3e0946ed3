"""Kubernetes workloads that run as containers: the Workload each one stands for.

When the image map has no entry for a workload's image and a container
runtime can be used (``runtime.podman``), ``container_workload`` turns the
Deployment, StatefulSet, ReplicaSet, DaemonSet or Pod into a Workload whose
spec also names the container (``ContainerWorkloadSpec``): image, command,
args and workingDir, with the pod template's labels, ``serviceAccountName``,
``restartPolicy``, ``securityContext`` ids, the container's ports, literal
``env`` and readiness probe. Its pods are made from it as for any Workload
(``PodSpec.from_workload`` reads ``container``), so Services, identities,
probes and restarts are the same; only the app is ``podman run``.

The image map wins when both could run an image: it is the explicit choice.
An image that is not in podman's local storage is not run, and the reason
says so: images are never pulled.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from pilotfish.api.base import ApiModel, ObjectMeta
from pilotfish.api.core.workloads import Container, PodTemplateView, pod_template
from pilotfish.api.resource import Resource
from pilotfish.api.runtime.workload import (
    API_VERSION,
    ContainerPort,
    SecurityContext,
    WorkloadSpec,
)
from pilotfish.runtime.image_map import container_probe, literal_env, secret_volumes
from pilotfish.runtime.podman import (
    ContainerRuntime,
    Podman,
    container_runtime_problem,
    detect_podman,
)

__all__ = [
    "ContainerSpec",
    "ContainerWorkloadSpec",
    "Containers",
    "container_support",
    "container_workload",
]

_RESTART_POLICIES = ("Always", "OnFailure", "Never")


class ContainerSpec(ApiModel):
    """The container a Workload's pods run (Kubernetes' field names and meaning)."""

    image: str
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    working_dir: str | None = None


class ContainerWorkloadSpec(WorkloadSpec):
    """A Workload whose app is ``container``; ``command`` stays empty."""

    container: ContainerSpec


@dataclass(frozen=True)
class Containers:
    """What planning knows about containers: why none can run (``problem``), else
    whether an image is present locally (``present``: None when not known)."""

    problem: str | None
    present: Callable[[str], bool | None] = lambda image: None


def container_workload(resource: Resource, present: Callable[[str], bool | None]) -> Resource | str:
    """The container Workload that runs ``resource``'s pods, or why there is none."""
    view = pod_template(resource)
    if view is None:
        return f"{resource.kind} is not a workload kind"
    if resource.kind == "Job":
        return "not run: Jobs run to completion, which the local runtime does not support"
    containers = view.spec.containers
    if len(containers) != 1:
        return f"not run: {len(containers)} containers; the local runtime runs one per pod"
    container = containers[0]
    if not container.image:
        return "not run: its container names no image"
    if not present(container.image):
        return (
            f"not run: image {container.image} is not present locally and pulling is "
            "disabled (build or load it with podman, or map it with --image-map)"
        )
    extra: Mapping[str, Any] = container.model_extra or {}
    replicas = getattr(resource.spec, "replicas", 1)
    spec = ContainerWorkloadSpec(
        replicas=replicas if isinstance(replicas, int) else 1,
        service_account=view.spec.account,
        command=[],
        env=literal_env(container),
        ports=[
            ContainerPort(name=p.name, container_port=p.container_port, protocol=p.protocol)
            for p in container.ports
        ],
        readiness_probe=container_probe(container),
        secret_volumes=secret_volumes(container, view.spec.model_extra or {}),
        restart_policy=_restart_policy(view),
        security_context=_security_context(view, container),
        container=ContainerSpec(
            image=container.image,
            command=[str(a) for a in extra.get("command") or ()],
            args=[str(a) for a in extra.get("args") or ()],
            working_dir=str(extra["workingDir"]) if extra.get("workingDir") else None,
        ),
    )
    return Resource(
        api_version=API_VERSION,
        kind="Workload",
        # The template's annotations too: sidecar.istio.io/inject, prometheus.io/*.
        metadata=ObjectMeta(
            name=resource.name,
            namespace=resource.namespace,
            labels=dict(view.labels),
            annotations=dict(view.annotations),
        ),
        spec=spec,
        source=resource.source,
    )


def _restart_policy(view: PodTemplateView) -> Any:
    policy = (view.spec.model_extra or {}).get("restartPolicy")
    return policy if policy in _RESTART_POLICIES else "Always"


def _security_context(view: PodTemplateView, container: Container) -> SecurityContext | None:
    """``runAsUser``/``runAsGroup``: the container's over the pod's, as in Kubernetes."""
    ids: dict[str, int] = {}
    for source in (view.spec.model_extra, container.model_extra):
        context = (source or {}).get("securityContext")
        if isinstance(context, Mapping):
            for key in ("runAsUser", "runAsGroup"):
                if isinstance(context.get(key), int):
                    ids[key] = context[key]
    if not ids:
        return None
    return SecurityContext(run_as_user=ids.get("runAsUser"), run_as_group=ids.get("runAsGroup"))


def container_support(
    choice: ContainerRuntime, mode: str, state_dir: Path, *, root: bool | None = None
) -> tuple[Podman | None, Containers]:
    """The mesh's podman (None when containers cannot run) and what planning knows."""
    executable = shutil.which("podman")
    problem = container_runtime_problem(
        choice, mode, root=os.geteuid() == 0 if root is None else root, podman=executable
    )
    if problem is not None:
        return None, Containers(problem)
    podman = detect_podman(state_dir)
    return podman, Containers(None, podman.images.present)
