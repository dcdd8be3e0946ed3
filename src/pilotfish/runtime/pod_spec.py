"""What one pod runs: a plain, frozen description built from a Workload (or by hand in tests).

``PodSpec`` deliberately does not depend on the pydantic schema of the
``pilotfish.io/v1alpha1`` Workload kind: the runtime and its tests build specs
directly, and ``PodSpec.from_workload`` is the one place that reads the schema
(by attribute, so any object shaped like ``WorkloadSpec`` works).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from pilotfish.agent.config import AppProbe

__all__ = [
    "WORKLOAD_API_VERSION",
    "ContainerImage",
    "PodSpec",
    "PodSpecError",
    "PortSpec",
    "ProbeSpec",
    "RestartPolicy",
    "SecretVolumeSpec",
]

RestartPolicy = Literal["Always", "OnFailure", "Never"]

WORKLOAD_API_VERSION = "pilotfish.io/v1alpha1"


class PodSpecError(ValueError):
    """A Workload cannot be turned into a pod (the message is meant for the user)."""


@dataclass(frozen=True, slots=True)
class PortSpec:
    """A port the app listens on (``container_port`` as declared in the Workload)."""

    name: str | None
    container_port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A readiness probe with Kubernetes' timing fields; ``port`` is a container port number.

    ``kind`` ``http`` is ``httpGet`` (``path``), ``tcp`` is ``tcpSocket``.
    """

    kind: Literal["http", "tcp"]
    port: int
    path: str = "/"
    initial_delay_seconds: float = 0.0
    period_seconds: float = 1.0
    timeout_seconds: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1

    def __post_init__(self) -> None:
        if self.period_seconds <= 0 or self.timeout_seconds <= 0:
            raise PodSpecError("probe period and timeout must be positive")
        if self.failure_threshold < 1 or self.success_threshold < 1:
            raise PodSpecError("probe thresholds must be at least 1")
        if self.initial_delay_seconds < 0:
            raise PodSpecError("probe initial delay must not be negative")

    def app_probe(self) -> AppProbe:
        """The check the sidecar agent runs for this probe (``--app-probe``)."""
        return AppProbe(self.kind, self.port, self.path)


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """The app is a container image (run by ``runtime.podman``), not a local command.

    ``command`` replaces the image's entrypoint and ``args`` its command, as in
    Kubernetes; empty means the image's own. ``working_dir`` None: the image's.
    """

    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerImage:
        workdir = data.get("working_dir")
        return cls(
            image=str(data["image"]),
            command=tuple(str(a) for a in data.get("command", ())),
            args=tuple(str(a) for a in data.get("args", ())),
            working_dir=None if workdir is None else str(workdir),
        )


@dataclass(frozen=True, slots=True)
class SecretVolumeSpec:
    """A Secret's keys as files under ``mount_path`` in the app's view: every key
    (``items`` empty) or each (key, relative path) of ``items``."""

    secret: str
    mount_path: str
    items: tuple[tuple[str, str], ...] = ()
    kind: str = "Secret"  # or "ConfigMap": ``secret`` then names a ConfigMap

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SecretVolumeSpec:
        return cls(
            str(data["secret"]),
            str(data["mount_path"]),
            tuple((str(k), str(v)) for k, v in data.get("items", ())),
            str(data.get("kind", "Secret")),
        )


@dataclass(frozen=True, slots=True)
class PodSpec:
    """One replica of a Workload: its identity, its process and how it is probed.

    ``name`` is ``<workload>-<index>``; ``labels`` and ``env`` are sorted pairs
    (env in declaration order: a later duplicate wins, as in Kubernetes).
    """

    name: str
    workload: str
    namespace: str
    command: tuple[str, ...]
    labels: tuple[tuple[str, str], ...] = ()
    service_account: str = "default"
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortSpec, ...] = ()
    readiness: ProbeSpec | None = None
    restart_policy: RestartPolicy = "Always"
    # securityContext: None lets the runtime pick the pod's own unprivileged ids.
    run_as_user: int | None = None
    run_as_group: int | None = None
    # Sorted metadata annotations (prometheus.io/scrape... for metrics merging).
    annotations: tuple[tuple[str, str], ...] = ()
    # Set when the app is a container image; ``command`` is then unused (empty).
    container: ContainerImage | None = None
    secret_volumes: tuple[SecretVolumeSpec, ...] = ()

    def __post_init__(self) -> None:
        if not self.command and self.container is None:
            raise PodSpecError(f"pod {self.name}: command must not be empty")

    @property
    def local_id(self) -> str:
        """The pod's name on this host: ``<name>`` in ``default``, else ``<name>.<namespace>``.

        Unique across namespaces; names the pod's log files and its directory.
        """
        return self.name if self.namespace == "default" else f"{self.name}.{self.namespace}"

    @property
    def proxy_id(self) -> str:
        """The sidecar's proxy id: ``<pod>.<namespace>``."""
        return f"{self.name}.{self.namespace}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict that ``from_json`` turns back into an equal spec."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PodSpec:
        """The spec ``to_json`` wrote; raises ``PodSpecError`` on malformed data."""
        try:
            probe = data.get("readiness")
            container = data.get("container")
            spec = cls(
                name=str(data["name"]),
                workload=str(data["workload"]),
                namespace=str(data["namespace"]),
                command=tuple(str(a) for a in data["command"]),
                labels=tuple((str(k), str(v)) for k, v in data.get("labels", ())),
                service_account=str(data.get("service_account", "default")),
                env=tuple((str(k), str(v)) for k, v in data.get("env", ())),
                ports=tuple(
                    PortSpec(p.get("name"), int(p["container_port"]), str(p.get("protocol", "TCP")))
                    for p in data.get("ports", ())
                ),
                readiness=ProbeSpec(**probe) if probe is not None else None,
                restart_policy=cast(RestartPolicy, str(data.get("restart_policy", "Always"))),
                run_as_user=_optional_int(data.get("run_as_user")),
                run_as_group=_optional_int(data.get("run_as_group")),
                annotations=tuple((str(k), str(v)) for k, v in data.get("annotations", ())),
                container=ContainerImage.from_json(container) if container is not None else None,
                secret_volumes=tuple(
                    SecretVolumeSpec.from_json(v) for v in data.get("secret_volumes", ())
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PodSpecError(f"malformed recorded pod spec: {exc}") from exc
        if spec.restart_policy not in ("Always", "OnFailure", "Never"):
            raise PodSpecError(f"malformed recorded pod spec: restart policy {spec.restart_policy}")
        return spec

    @classmethod
    def from_workload(cls, resource: Any, index: int) -> PodSpec:
        """Pod ``index`` of a ``pilotfish.io/v1alpha1`` Workload ``Resource``.

        Reads ``resource.metadata`` (name, namespace, labels) and ``resource.spec``
        (``WorkloadSpec`` attributes: command, env, ports, readiness_probe,
        restart_policy, service_account). A probe port given by name is resolved
        against the container ports; an unknown name raises ``PodSpecError``.
        """
        kind = getattr(resource, "kind", "Workload")
        if kind != "Workload":
            raise PodSpecError(f"expected a Workload, got {kind}")
        meta = resource.metadata
        spec = resource.spec
        ports = tuple(
            PortSpec(p.name, int(p.container_port), str(p.protocol)) for p in spec.ports or ()
        )
        context = getattr(spec, "security_context", None)
        return cls(
            name=f"{meta.name}-{index}",
            workload=str(meta.name),
            namespace=str(meta.namespace),
            command=tuple(str(arg) for arg in spec.command),
            labels=tuple(sorted(_str_map(meta.labels or {}).items())),
            service_account=str(spec.service_account or "default"),
            env=tuple((str(v.name), str(v.value or "")) for v in spec.env or ()),
            ports=ports,
            readiness=_probe(spec.readiness_probe, ports, str(meta.name)),
            restart_policy=spec.restart_policy or "Always",
            run_as_user=getattr(context, "run_as_user", None),
            run_as_group=getattr(context, "run_as_group", None),
            annotations=tuple(sorted(_str_map(getattr(meta, "annotations", None) or {}).items())),
            container=_container(getattr(spec, "container", None)),
            secret_volumes=tuple(
                SecretVolumeSpec(
                    str(v.secret_name),
                    str(v.mount_path),
                    tuple((str(i.key), str(i.path)) for i in v.items),
                    str(getattr(v, "kind", "Secret")),
                )
                for v in getattr(spec, "secret_volumes", None) or ()
            ),
        )


def _container(model: Any) -> ContainerImage | None:
    """The ``ContainerImage`` of a container Workload (``runtime.container_workloads``)."""
    if model is None:
        return None
    return ContainerImage(
        image=str(model.image),
        command=tuple(str(a) for a in model.command),
        args=tuple(str(a) for a in model.args),
        working_dir=None if model.working_dir is None else str(model.working_dir),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _str_map(mapping: Mapping[Any, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}


def _probe(probe: Any, ports: tuple[PortSpec, ...], workload: str) -> ProbeSpec | None:
    if probe is None:
        return None
    handler = probe.http_get or probe.tcp_socket
    if handler is None:
        raise PodSpecError(f"workload {workload}: readinessProbe needs httpGet or tcpSocket")
    port = _port_number(handler.port, ports)
    if port is None:
        raise PodSpecError(f"workload {workload}: readinessProbe port {handler.port!r} is unknown")
    http = probe.http_get is not None
    return ProbeSpec(
        kind="http" if http else "tcp",
        port=port,
        path=str(probe.http_get.path or "/") if http else "/",
        initial_delay_seconds=float(probe.initial_delay_seconds),
        period_seconds=float(probe.period_seconds),
        timeout_seconds=float(probe.timeout_seconds),
        failure_threshold=int(probe.failure_threshold),
        success_threshold=int(probe.success_threshold),
    )


def _port_number(port: int | str, ports: tuple[PortSpec, ...]) -> int | None:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    return next((p.container_port for p in ports if p.name == port), None)
