"""How a pod runner starts and removes an app that is a container (``runtime.podman``).

``prepare_container`` runs before every start of the app: it removes a
container of the same name that a killed ``podman run`` left behind (a new
one could not take the name), writes the env file into the pod's directory
(0600, root's) and returns the ``podman run`` command line with podman's own
environment, which holds nothing of the pod's (``podman_run``).
``remove_pod_container`` runs after the app stopped or exited, so a
container whose ``podman run`` was SIGKILLed after the grace period does
not outlive its pod.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pilotfish.fsutil import atomic_write_text
from pilotfish.runtime.pod_command import PodEnv
from pilotfish.runtime.pod_spec import PodSpec
from pilotfish.runtime.podman import remove_container
from pilotfish.runtime.podman_run import (
    ENV_FILE,
    container_env,
    container_name,
    env_file_text,
    run_argv,
)

__all__ = ["prepare_container", "remove_pod_container"]


async def prepare_container(
    spec: PodSpec, env: PodEnv, app_ports: Mapping[int, int]
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of ``podman run`` for ``spec``'s app.

    Raises ``ValueError`` when the pod cannot run its container here (no
    container runtime, no network namespace, an env value podman cannot carry).
    """
    if env.podman is None:
        raise ValueError("its app is a container image and this mesh runs no container runtime")
    name = container_name(env)
    env_file = env.pod_dir(spec.local_id) / ENV_FILE
    text = env_file_text(container_env(spec, env, app_ports))
    await remove_container(env.podman, name)
    atomic_write_text(env_file, text, mode=0o600)
    return run_argv(env.podman, spec, env, env_file), {"PATH": os.environ.get("PATH", os.defpath)}


async def remove_pod_container(spec: PodSpec, env: PodEnv) -> None:
    """Remove the pod's container if one is left (no-op for a process pod)."""
    if spec.container is not None and env.podman is not None and env.address.netns:
        await remove_container(env.podman, container_name(env))
