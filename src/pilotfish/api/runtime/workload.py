"""``pilotfish.io/v1alpha1`` Workload: processes the local runtime runs, with sidecars.

A Workload is a Kubernetes Deployment reduced to what a local mesh needs:
``replicas`` copies of one process (``command`` is its argv), each in its own
pod (network namespace) labelled with the Workload's ``metadata.labels``, so
that Services select them exactly as in Kubernetes. Field names follow the
Kubernetes container spec (``env``, ``ports``, ``readinessProbe``,
``restartPolicy``) so users can carry their habits over.

Schemas only check types; the rules (non-empty command, port names, probe
handlers) live in ``pilotfish.api.validation.workload``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pilotfish.api.base import ApiModel

__all__ = [
    "API_VERSION",
    "POD_ID_RANGE",
    "ContainerPort",
    "EnvVar",
    "HTTPGetAction",
    "KeyToPath",
    "Probe",
    "RestartPolicy",
    "SecretVolume",
    "SecurityContext",
    "TCPSocketAction",
    "WorkloadSpec",
]

#: The one apiVersion of the Workload kind.
API_VERSION = "pilotfish.io/v1alpha1"

#: User and group ids the local runtime gives pods that name none (one per pod). Above
#: the ranges Debian gives people (1000-59999) and systemd's dynamic users
#: (61184-65519), and above the first subordinate-id block (100000-165535) that
#: container tools reserve. A securityContext may not pick one: it would be another pod's.
POD_ID_RANGE = range(200_000, 265_536)

RestartPolicy = Literal["Always", "OnFailure", "Never"]


class EnvVar(ApiModel):
    """One environment variable of the process, as in Kubernetes (``value`` defaults to "")."""

    name: str
    value: str = ""


class ContainerPort(ApiModel):
    """A port the process listens on; probes and Service ``targetPort`` may refer to its name."""

    name: str | None = None
    container_port: int
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class HTTPGetAction(ApiModel):
    """Ready when ``GET path`` on ``port`` (a number or a container port name) answers 2xx/3xx."""

    path: str = "/"
    port: int | str


class TCPSocketAction(ApiModel):
    """Ready when a TCP connection to ``port`` (a number or a container port name) opens."""

    port: int | str


class Probe(ApiModel):
    """A readiness probe: exactly one handler, and Kubernetes' timing fields.

    ``periodSeconds`` defaults to 1 (Kubernetes: 10) because local processes
    start in well under a second and ``pilotfish up`` should not wait for them.
    """

    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    initial_delay_seconds: int = 0
    period_seconds: int = 1
    timeout_seconds: int = 1
    failure_threshold: int = 3
    success_threshold: int = 1

    @property
    def port(self) -> int | str | None:
        """The handler's port as written (None when no handler is set)."""
        handler = self.http_get or self.tcp_socket
        return handler.port if handler is not None else None


class SecurityContext(ApiModel):
    """Who the app runs as, with Kubernetes' field names.

    Apps never run as root in the local mesh: without ``runAsUser`` each pod
    gets a dedicated unprivileged uid (and a group of the same number) from
    the runtime's reserved range. ``runAsNonRoot`` is accepted for
    compatibility; it always holds.
    """

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None


class KeyToPath(ApiModel):
    """One key of a Secret as one file (Kubernetes' ``items`` entry)."""

    key: str
    path: str


class SecretVolume(ApiModel):
    """A Secret's keys as files under ``mountPath`` in the app's view of the file
    system (Kubernetes' ``secret`` volume with its ``volumeMount``): every key as
    a file of its name, or only ``items``, each at its ``path``."""

    secret_name: str
    mount_path: str
    items: list[KeyToPath] = Field(default_factory=list)
    # A ``configMap`` volume is laid out the same way, from the ConfigMap of that name.
    kind: Literal["Secret", "ConfigMap"] = "Secret"


class WorkloadSpec(ApiModel):
    """The spec of a Workload; pod labels are the resource's ``metadata.labels``."""

    replicas: int = 1
    service_account: str = "default"
    command: list[str]
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    readiness_probe: Probe | None = None
    restart_policy: RestartPolicy = "Always"
    security_context: SecurityContext | None = None
    secret_volumes: list[SecretVolume] = Field(default_factory=list)

    def port_number(self, port: int | str) -> int | None:
        """``port`` as a number: itself if an int, else the named container port's number
        (None when no container port has that name)."""
        if isinstance(port, int):
            return port
        for candidate in self.ports:
            if candidate.name == port:
                return candidate.container_port
        return None

    def env_dict(self) -> dict[str, str]:
        """The environment as a dict; a repeated name takes its last value, as in Kubernetes."""
        return {var.name: var.value for var in self.env}
