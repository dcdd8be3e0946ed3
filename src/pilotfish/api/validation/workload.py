"""Semantic checks of a ``pilotfish.io/v1alpha1`` Workload, following Kubernetes' rules
for containers where the field is the same (port names, env names, probes)."""

from __future__ import annotations

import re

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.resource import Resource
from pilotfish.api.runtime.workload import POD_ID_RANGE, Probe, WorkloadSpec
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["check_port_name", "validate"]

# Kubernetes' IsValidPortName: an IANA service name.
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# The proxy's uid/gid: traffic capture exempts it, so no app may ever run with it.
_PROXY_ID = 1337
_MAX_ID = 2**31 - 1
# Kubernetes' IsEnvVarName.
_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def check_port_name(name: str) -> str | None:
    """None for a valid IANA-style port name (at most 15 lower-case letters, digits and
    '-', at least one letter, no leading, trailing or doubled '-'), else the reason."""
    if (
        len(name) > 15
        or not _IANA_SVC_NAME.match(name)
        or "--" in name
        or not any(c.isalpha() for c in name)
    ):
        return (
            f"invalid port name {name!r}: must be at most 15 lower case letters, digits and "
            "'-', contain a letter, and not start, end or repeat '-'"
        )
    return None


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, WorkloadSpec)
    f = Findings(resource)
    if spec.replicas < 0:
        f.error("spec.replicas", f"replicas must not be negative (got {spec.replicas})")
    f.add(
        "spec.serviceAccount",
        checks.check_dns1123_subdomain(spec.service_account, "service account"),
    )
    if not spec.command:
        f.error("spec.command", "command must name the program to run (argv, non-empty)")
    elif not spec.command[0]:
        f.error("spec.command[0]", "the program (argv[0]) must not be empty")
    _check_env(f, spec)
    _check_ports(f, spec)
    if spec.readiness_probe is not None:
        _check_probe(f, spec, spec.readiness_probe, "spec.readinessProbe")
    _check_security_context(f, spec)
    _check_secret_volumes(f, spec)
    return f.items


def _check_secret_volumes(f: Findings, spec: WorkloadSpec) -> None:
    """Mount paths absolute, below ``/`` and distinct; item paths relative, without ``..``
    (Kubernetes' rules for a secret volume's ``items``)."""
    seen: set[str] = set()
    for i, volume in enumerate(spec.secret_volumes):
        where = f"spec.secretVolumes[{i}]"
        f.add(
            f"{where}.secretName",
            checks.check_dns1123_subdomain(volume.secret_name, "Secret name"),
        )
        mount = volume.mount_path.rstrip("/")
        if not mount.startswith("/") or mount.count("/") < 2 or ".." in mount.split("/"):
            f.error(
                f"{where}.mountPath",
                f"mountPath {volume.mount_path!r} must be an absolute path below a top-level "
                "directory (such as /etc/secret-volume), without '..'",
            )
        elif mount in seen:
            f.error(f"{where}.mountPath", f"mountPath {mount!r} is used by another volume")
        seen.add(mount)
        for j, item in enumerate(volume.items):
            parts = item.path.split("/")
            if not item.path or item.path.startswith("/") or ".." in parts:
                f.error(
                    f"{where}.items[{j}].path",
                    f"path {item.path!r} must be relative and must not contain '..'",
                )


def _check_security_context(f: Findings, spec: WorkloadSpec) -> None:
    context = spec.security_context
    if context is None:
        return
    for field_name, value, what in (
        ("runAsUser", context.run_as_user, "user"),
        ("runAsGroup", context.run_as_group, "group"),
    ):
        path = f"spec.securityContext.{field_name}"
        if value is None:
            continue
        if value == 0:
            f.error(path, f"apps never run as root in the local mesh ({what} id 0 is refused)")
        elif value == _PROXY_ID:
            f.error(
                path,
                f"{what} id 1337 belongs to the sidecar proxy, whose traffic is "
                "not captured; apps may not use it",
            )
        elif not 0 < value <= _MAX_ID:
            f.error(path, f"{what} id must be in 1..{_MAX_ID} (got {value})")
        elif value in POD_ID_RANGE:
            f.error(
                path,
                f"{what} id {value} lies in the range the runtime gives pods "
                f"({POD_ID_RANGE.start}-{POD_ID_RANGE.stop - 1}): it would be another pod's",
            )
    if context.run_as_non_root is False:
        f.warning(
            "spec.securityContext.runAsNonRoot",
            "runAsNonRoot: false has no effect: apps always run as a non-root user",
        )


def _check_env(f: Findings, spec: WorkloadSpec) -> None:
    seen: set[str] = set()
    for i, var in enumerate(spec.env):
        path = f"spec.env[{i}].name"
        if not _ENV_VAR_NAME.match(var.name):
            f.error(
                path,
                f"invalid environment variable name {var.name!r}: letters, digits, '_', '-' "
                "and '.', not starting with a digit",
            )
        elif var.name in seen:
            # Kubernetes accepts this (the last one wins) but it is almost always a mistake.
            f.warning(path, f"environment variable {var.name!r} is set twice; the last wins")
        seen.add(var.name)


def _check_ports(f: Findings, spec: WorkloadSpec) -> None:
    names: set[str] = set()
    numbers: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        if port.name is not None:
            problem = check_port_name(port.name)
            f.add(f"{path}.name", problem)
            if problem is None and port.name in names:
                f.error(f"{path}.name", f"duplicate port name {port.name!r}")
            names.add(port.name)
        problem = checks.check_port(port.container_port, "containerPort")
        f.add(f"{path}.containerPort", problem)
        key = (port.container_port, port.protocol)
        if problem is None and key in numbers:
            f.error(
                f"{path}.containerPort",
                f"duplicate containerPort {port.container_port}/{port.protocol}",
            )
        numbers.add(key)


def _check_probe(f: Findings, spec: WorkloadSpec, probe: Probe, path: str) -> None:
    handlers = [
        name
        for name, handler in (("httpGet", probe.http_get), ("tcpSocket", probe.tcp_socket))
        if handler is not None
    ]
    if len(handlers) != 1:
        f.error(
            path,
            "a probe must have exactly one handler: httpGet or tcpSocket"
            + (f" (got {' and '.join(handlers)})" if handlers else ""),
        )
    if probe.http_get is not None and not probe.http_get.path.startswith("/"):
        f.error(f"{path}.httpGet.path", f"path {probe.http_get.path!r} must start with '/'")
    for name in handlers:
        handler = probe.http_get if name == "httpGet" else probe.tcp_socket
        assert handler is not None
        port_path = f"{path}.{name}.port"
        if isinstance(handler.port, int):
            f.add(port_path, checks.check_port(handler.port))
        elif spec.port_number(handler.port) is None:
            known = sorted(p.name for p in spec.ports if p.name)
            f.error(
                port_path,
                f"port {handler.port!r} is not the name of a container port"
                + (f" (known: {', '.join(known)})" if known else " (no port is named)"),
            )
    minimums = (
        ("initialDelaySeconds", probe.initial_delay_seconds, 0),
        ("periodSeconds", probe.period_seconds, 1),
        ("timeoutSeconds", probe.timeout_seconds, 1),
        ("failureThreshold", probe.failure_threshold, 1),
        ("successThreshold", probe.success_threshold, 1),
    )
    for field_name, value, minimum in minimums:
        if value < minimum:
            f.error(
                f"{path}.{field_name}", f"{field_name} must be at least {minimum} (got {value})"
            )
