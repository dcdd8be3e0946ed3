"""Kubernetes workloads the local runtime is given but cannot run, and why.

The local runtime runs the pods of ``pilotfish.io/v1alpha1`` Workloads: a
Workload names the command to run. A Deployment, StatefulSet, DaemonSet,
ReplicaSet, Job or Pod names container images instead, and this runtime has no
container runtime nor a map from images to local commands. Such objects are
still configuration (analyzers read them), but no pod is started for them:
``pilotfish up`` says so once for each, naming the images, so that nobody waits
for pods that will never come.
"""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish.api.core.workloads import WORKLOAD_KINDS, pod_template
from pilotfish.api.resource import Resource

__all__ = ["not_run_reasons"]


def not_run_reasons(resources: Iterable[Resource]) -> dict[str, str]:
    """``"Kind namespace/name"`` -> why no pod runs for it, for every Kubernetes workload."""
    out: dict[str, str] = {}
    for r in resources:
        if r.kind not in WORKLOAD_KINDS:
            continue
        view = pod_template(r)
        images = sorted({c.image for c in view.spec.containers if c.image}) if view else []
        shown = f" (images: {', '.join(images)})" if images else ""
        out[f"{r.kind} {r.namespace}/{r.name}"] = (
            "not run: the local runtime runs only Workload (pilotfish.io/v1alpha1) pods, "
            f"and has no container runtime or image map for container images{shown}; "
            "write a Workload with the command to run"
        )
    return out
