"""Running Kubernetes workloads without containers: an image -> local command map.

Theory of operation: the local runtime runs processes, not images. An image
map (``pilotfish up --image-map FILE``) says which local command stands for an
image, so a Deployment, StatefulSet, ReplicaSet, DaemonSet or Pod written for
Kubernetes runs unchanged: ``as_workload`` turns it into the ``Workload`` the
runtime already knows (pod labels from the pod template, ``serviceAccountName``
as identity, the container's ports and literal ``env``, the map's command and
readiness probe, and each ``secret`` volume the container mounts as a
``secretVolumes`` entry), and the pods are made from that exactly as for a
Workload. Other volume kinds are not modelled: their mounts are left out.

The file is YAML::

    images:
      examples-bookinfo-details-v1:          # repository name, any registry/tag
        command: [python, -m, pilotfish.samples.bookinfo.details]
        env: {SOME: value}                    # on top of the container's env
        readinessProbe: {httpGet: {path: /health, port: 9080}}

A key is an image without its tag or digest (``docker.io/istio/x``) or just its
last path element (``x``), which then matches the image from any registry.
What cannot run is said, with the reason: no mapping for the image (and no
container runtime, ``runtime.container_workloads``, to run it instead),
several containers (one process per pod), Jobs (run to completion, not
supported). The map wins over a container runtime: it is the explicit choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from pilotfish.api.base import ApiModel, ObjectMeta
from pilotfish.api.core.workloads import Container, pod_template
from pilotfish.api.resource import Resource
from pilotfish.api.runtime.workload import (
    API_VERSION,
    ContainerPort,
    EnvVar,
    KeyToPath,
    Probe,
    SecretVolume,
    WorkloadSpec,
)

__all__ = [
    "NO_CONTAINER_RUNTIME",
    "ImageCommand",
    "ImageMap",
    "ImageMapError",
    "as_workload",
    "container_probe",
    "literal_env",
    "load_image_map",
    "secret_volumes",
    "unmapped_image",
]

#: Why an unmapped image cannot run when no container runtime was considered.
NO_CONTAINER_RUNTIME = "the local runtime has no container runtime"


class ImageMapError(ValueError):
    """The image map file cannot be used (the message names the file)."""


class ImageCommand(ApiModel):
    """What runs in place of one image."""

    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    readiness_probe: Probe | None = None


class _ImageMapFile(ApiModel):
    images: dict[str, ImageCommand]


@dataclass(frozen=True)
class ImageMap:
    images: Mapping[str, ImageCommand]

    def lookup(self, image: str) -> ImageCommand | None:
        """The entry for ``image``: by repository (tag and digest dropped), else by its
        last path element."""
        repository = image.split("@", 1)[0]
        last = repository.rsplit("/", 1)[-1]
        if ":" in last:
            repository = repository[: repository.rindex(":")]
        return self.images.get(repository) or self.images.get(repository.rsplit("/", 1)[-1])


def load_image_map(path: str | Path) -> ImageMap:
    """Read and check an image map file; ``ImageMapError`` says what is wrong."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        parsed = _ImageMapFile.model_validate(data)
    except OSError as exc:
        raise ImageMapError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ImageMapError(f"{path}: not YAML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ImageMapError(f"{path}: {where}: {first['msg']}") from None
    return ImageMap(dict(parsed.images))


def unmapped_image(resource: Resource, image_map: ImageMap | None) -> str | None:
    """The image of a one-container workload (not a Job) that the map does not cover,
    else None: what a container runtime could run instead."""
    view = pod_template(resource)
    if view is None or resource.kind == "Job" or len(view.spec.containers) != 1:
        return None
    image = view.spec.containers[0].image
    if not image or (image_map is not None and image_map.lookup(image) is not None):
        return None
    return image


def as_workload(
    resource: Resource, image_map: ImageMap | None, no_runtime: str = NO_CONTAINER_RUNTIME
) -> Resource | str:
    """The Workload that runs ``resource``'s pods, or why there is none
    (``no_runtime``: why no container runtime runs an unmapped image)."""
    view = pod_template(resource)
    if view is None:
        return f"{resource.kind} is not a workload kind"
    if resource.kind == "Job":
        return "not run: Jobs run to completion, which the local runtime does not support"
    containers = view.spec.containers
    if len(containers) != 1:
        return f"not run: {len(containers)} containers; the local runtime runs one process per pod"
    container = containers[0]
    entry = image_map.lookup(container.image or "") if image_map is not None else None
    if entry is None:
        how = "no --image-map given" if image_map is None else "the image map has no entry for it"
        return f"not run: image {container.image or '(none)'} cannot run here ({how}; {no_runtime})"
    replicas = getattr(resource.spec, "replicas", 1)
    spec = WorkloadSpec(
        replicas=replicas if isinstance(replicas, int) else 1,
        service_account=view.spec.account,
        command=list(entry.command),
        env=[*literal_env(container), *(EnvVar(name=k, value=v) for k, v in entry.env.items())],
        ports=[
            ContainerPort(name=p.name, container_port=p.container_port, protocol=p.protocol)
            for p in container.ports
        ],
        readiness_probe=entry.readiness_probe or container_probe(container),
        secret_volumes=secret_volumes(container, view.spec.model_extra or {}),
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


def literal_env(container: Container) -> list[EnvVar]:
    """The container's ``env`` entries with a literal value (``valueFrom`` has no source here)."""
    extra: Mapping[str, Any] = container.model_extra or {}
    out: list[EnvVar] = []
    for item in extra.get("env") or ():
        if (
            isinstance(item, Mapping)
            and isinstance(item.get("name"), str)
            and "valueFrom" not in item
        ):
            out.append(EnvVar(name=item["name"], value=str(item.get("value", ""))))
    return out


def secret_volumes(container: Container, pod_extra: Mapping[str, Any]) -> list[SecretVolume]:
    """The container's ``volumeMounts`` of the pod's ``secret`` and ``configMap`` volumes."""
    secrets: dict[str, Mapping[str, Any]] = {}
    kinds: dict[str, Literal["Secret", "ConfigMap"]] = {}
    for volume in pod_extra.get("volumes") or ():
        if not isinstance(volume, Mapping):
            continue
        if isinstance(volume.get("secret"), Mapping):
            secrets[str(volume.get("name"))] = volume["secret"]
            kinds[str(volume.get("name"))] = "Secret"
        elif isinstance(volume.get("configMap"), Mapping):
            # A configMap volume names its object ``name`` where a secret one says secretName.
            source = volume["configMap"]
            secrets[str(volume.get("name"))] = {**source, "secretName": source.get("name", "")}
            kinds[str(volume.get("name"))] = "ConfigMap"
    out: list[SecretVolume] = []
    extra: Mapping[str, Any] = container.model_extra or {}
    for mount in extra.get("volumeMounts") or ():
        if not isinstance(mount, Mapping) or str(mount.get("name")) not in secrets:
            continue
        secret = secrets[str(mount["name"])]
        items = [
            KeyToPath(key=str(item.get("key")), path=str(item.get("path")))
            for item in secret.get("items") or ()
            if isinstance(item, Mapping)
        ]
        out.append(
            SecretVolume(
                secret_name=str(secret.get("secretName", "")),
                mount_path=str(mount.get("mountPath", "")),
                items=items,
                kind=kinds[str(mount["name"])],
            )
        )
    return out


def container_probe(container: Container) -> Probe | None:
    """The container's readinessProbe when it is one the runtime can run (httpGet, tcpSocket)."""
    extra: Mapping[str, Any] = container.model_extra or {}
    raw = extra.get("readinessProbe")
    if not isinstance(raw, Mapping):
        return None
    try:
        return Probe.model_validate(raw)
    except ValidationError:
        return None
