"""The ``podman run`` command line of a container pod's app (pure functions, unit-tested).

What each part is for:

- ``--network ns:/run/netns/<netns>``: the container joins the pod's network
  namespace, which the runtime made with the sidecar's capture rules in it,
  so its traffic goes through the sidecar unchanged (the rules exempt only
  the proxy's uid/gid 1337, and the container runs as the pod's own ids).
- ``/etc/netns/<netns>/hosts`` and ``resolv.conf`` mounted read-only over the
  container's: service names resolve as for a process pod, and the runtime's
  in-place rewrites (``network.names``) reach the running container.
- ``--user <uid>:<gid>`` of the pod (``runtime.users``), no capabilities,
  ``no-new-privileges``: the confinement a process pod gets, while the
  image's root filesystem already hides the host's files.
- The environment goes through an env file in the pod's own directory (root
  only), never on the command line, which every local user can read: the
  container's literal ``env`` first, then what the runtime sets for every
  pod (``POD_NAME``, ``POD_NAMESPACE``, ``POD_IP``, ``SERVICE_ACCOUNT``,
  ``PORT``/``PORT_<NAME>``). The image keeps its own ``PATH`` and ``HOME``.
- Kubernetes' ``command`` replaces the image's entrypoint and ``args`` its
  command; ``workingDir`` is ``--workdir``.
- ``--rm``, ``--pull never``, ``--http-proxy=false`` (no proxy variables of
  the supervisor leak in), the mesh and pod labels (``runtime.podman``), and
  ``--log-driver none``: the output is kept once, in the pod's log file, by
  the attached ``podman run``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from pilotfish.runtime.pod_command import PodEnv, port_env_name
from pilotfish.runtime.pod_spec import PodSpec
from pilotfish.runtime.podman import POD_LABEL, STATE_DIR_LABEL, Podman

__all__ = [
    "ENV_FILE",
    "NETNS_RUN",
    "container_env",
    "container_name",
    "env_file_text",
    "run_argv",
]

NETNS_RUN = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
ENV_FILE = "container.env"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def container_name(env: PodEnv) -> str:
    """The pod's container: named after its network namespace, unique on the host."""
    if env.address.netns is None:
        raise ValueError("a container needs the pod's network namespace (transparent mode)")
    return env.address.netns


def container_env(spec: PodSpec, env: PodEnv, app_ports: Mapping[int, int]) -> dict[str, str]:
    """The container's variables: the spec's ``env``, then the runtime's (later wins)."""
    out = dict(spec.env)
    out.update(
        POD_NAME=spec.name,
        POD_NAMESPACE=spec.namespace,
        POD_IP=env.address.ip,
        SERVICE_ACCOUNT=spec.service_account,
    )
    if spec.ports:
        out["PORT"] = str(app_ports[spec.ports[0].container_port])
        for port in spec.ports:
            if port.name:
                out[port_env_name(port.name)] = str(app_ports[port.container_port])
    return out


def env_file_text(variables: Mapping[str, str]) -> str:
    """``NAME=value`` lines for ``podman run --env-file``.

    Raises ``ValueError`` for what that format cannot carry: a value with a
    line break, or a name that is not a variable name.
    """
    lines = []
    for name, value in variables.items():
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"env {name!r}: not a variable name podman can pass")
        if "\n" in value or "\r" in value:
            raise ValueError(f"env {name}: a value with a line break cannot be passed to podman")
        lines.append(f"{name}={value}\n")
    return "".join(lines)


def run_argv(podman: Podman, spec: PodSpec, env: PodEnv, env_file: Path) -> list[str]:
    """The full ``podman run`` command line of ``spec``'s container."""
    container = spec.container
    if container is None:
        raise ValueError(f"pod {spec.name} runs no container image")
    name = container_name(env)
    argv = podman.command(
        "run",
        "--rm",
        "--name",
        name,
        "--pull",
        "never",
        "--http-proxy=false",
        "--log-driver",
        "none",
        "--network",
        f"ns:{NETNS_RUN / name}",
        "--hostname",
        spec.name,
        "--volume",
        f"{NETNS_ETC / name / 'hosts'}:/etc/hosts:ro",
        "--volume",
        f"{NETNS_ETC / name / 'resolv.conf'}:/etc/resolv.conf:ro",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--label",
        f"{STATE_DIR_LABEL}={podman.state_dir}",
        "--label",
        f"{POD_LABEL}={spec.local_id}",
        "--env-file",
        str(env_file),
    )
    for host, mount in env.volumes:  # the pod's Secret volumes, as written for it
        argv += ["--volume", f"{host}:{mount}:ro"]
    if env.app_user is not None:
        argv += ["--user", f"{env.app_user.uid}:{env.app_user.gid}"]
    for limit in podman.ulimits:
        argv += ["--ulimit", limit]
    if container.working_dir:
        argv += ["--workdir", container.working_dir]
    if container.command:
        # JSON form: an argv, not a string podman would split.
        argv += ["--entrypoint", json.dumps(list(container.command))]
    return [*argv, container.image, *container.args]
