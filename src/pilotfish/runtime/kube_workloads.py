"""Kubernetes workloads given to the local runtime: which run, and why the others do not.

The local runtime runs the pods of ``pilotfish.io/v1alpha1`` Workloads: a
Workload names the command to run. A Deployment, StatefulSet, DaemonSet,
ReplicaSet or Pod names container images instead. With an image map
(``runtime.image_map``) such a workload runs as the Workload it maps to;
else, when a container runtime can be used (``containers``), as a container
Workload (``runtime.container_workloads``) if its image is present locally;
otherwise (no map entry and no usable runtime, a missing image, several
containers, a Job) no pod is started for it, and ``pilotfish up`` says so
once for each, with the reason, so that nobody waits for pods that will never
come. The objects stay configuration either way: analyzers read them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish.api.core.workloads import WORKLOAD_KINDS
from pilotfish.api.resource import Resource
from pilotfish.runtime.container_workloads import Containers, container_workload
from pilotfish.runtime.image_map import ImageMap, as_workload, unmapped_image

__all__ = ["images_to_check", "not_run_reasons", "plan_workloads"]


def plan_workloads(
    resources: Iterable[Resource],
    image_map: ImageMap | None = None,
    containers: Containers | None = None,
) -> tuple[list[Resource], dict[str, str]]:
    """The Workloads to run for the Kubernetes workloads among ``resources``, and
    ``"Kind namespace/name"`` -> why no pod runs, for the others. A mapped workload
    whose namespace/name a Workload already has is not run twice."""
    resources = list(resources)
    taken = {(r.namespace, r.name) for r in resources if r.kind == "Workload"}
    runnable: list[Resource] = []
    reasons: dict[str, str] = {}
    for r in resources:
        if r.kind not in WORKLOAD_KINDS:
            continue
        who = f"{r.kind} {r.namespace}/{r.name}"
        planned = _plan(r, image_map, containers)
        if isinstance(planned, str):
            reasons[who] = planned
        elif (r.namespace, r.name) in taken:
            reasons[who] = f"not run: Workload {r.namespace}/{r.name} already has that name"
        else:
            taken.add((r.namespace, r.name))
            runnable.append(planned)
    return runnable, reasons


def not_run_reasons(
    resources: Iterable[Resource],
    image_map: ImageMap | None = None,
    containers: Containers | None = None,
) -> dict[str, str]:
    """``"Kind namespace/name"`` -> why no pod runs for it (see ``plan_workloads``)."""
    return plan_workloads(resources, image_map, containers)[1]


def images_to_check(resources: Iterable[Resource], image_map: ImageMap | None) -> set[str]:
    """The images a container runtime would run (whose local presence matters)."""
    return {i for r in resources if (i := unmapped_image(r, image_map)) is not None}


def _plan(
    resource: Resource, image_map: ImageMap | None, containers: Containers | None
) -> Resource | str:
    if containers is None:
        return as_workload(resource, image_map)
    if containers.problem is not None:
        return as_workload(resource, image_map, f"no container runtime: {containers.problem}")
    if unmapped_image(resource, image_map) is not None:
        return container_workload(resource, containers.present)
    return as_workload(resource, image_map)  # mapped, or not runnable at all: it says why
