"""Podman as the local runtime's container runtime: whether it can be used, and its commands.

Theory of operation. A Kubernetes workload whose image the image map does not
cover runs as a podman container when podman can be used here
(``container_runtime_problem`` says why not): ``up`` runs as root (rootful
podman, so the container can join a network namespace the supervisor made
and run as the pod's own uid), in transparent mode (a network namespace per
pod), with ``--container-runtime`` ``auto`` or ``podman`` and ``podman`` on
PATH.

Each container is the pod's app process: ``podman run`` in the foreground
(``podman_run`` builds the command line) is what the pod runner spawns,
supervises, signals and records, exactly as it does a local command. Podman
passes SIGTERM on to the container and returns the container's exit code,
its output is the container's, so restarts, probes (through the sidecar, in
the shared network namespace), ``pilotfish logs`` and adoption after a
supervisor crash work unchanged.

What podman keeps outside that process is handled here: a container outlives
a ``podman run`` that was SIGKILLed (the container's monitor, conmon, runs in
a session of its own). So every container carries the labels
``io.pilotfish.state-dir`` and ``io.pilotfish.pod``; the runner removes a
pod's container by name after stopping it and before starting it again
(``remove_container``), and teardown (``down``, or an ``up`` that cannot
adopt) removes every container labelled with the mesh's state directory
(``remove_mesh_containers``).

Images are never pulled (``--pull never``; this machine may have no registry
access and a mesh must not reach out on its own). ``ImagePresence`` asks
``podman image exists`` once per image and remembers a present image for the
run; a missing one is asked again after ``ABSENT_RECHECK_S``, so an image
built or loaded while the mesh runs is picked up by a later reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "ABSENT_RECHECK_S",
    "CONTAINER_RUNTIMES",
    "POD_LABEL",
    "STATE_DIR_LABEL",
    "ContainerRuntime",
    "ImagePresence",
    "Podman",
    "container_runtime_problem",
    "detect_podman",
    "oci_runtime_args",
    "remove_container",
    "remove_mesh_containers",
]

log = logging.getLogger("pilotfish.runtime.podman")

ContainerRuntime = Literal["auto", "podman", "none"]
CONTAINER_RUNTIMES: tuple[ContainerRuntime, ...] = ("auto", "podman", "none")

STATE_DIR_LABEL = "io.pilotfish.state-dir"
POD_LABEL = "io.pilotfish.pod"
ABSENT_RECHECK_S = 2.0
_COMMAND_TIMEOUT_S = 30.0
_CGROUP_V2_IN_HYBRID = Path("/sys/fs/cgroup/unified/cgroup.controllers")
_PID_MAX = Path("/proc/sys/kernel/pid_max")


@dataclass(frozen=True)
class Podman:
    """How this mesh calls podman: the executable, the flags before the subcommand
    (``global_args``), the ``--ulimit`` values, and the mesh it labels containers with."""

    executable: str
    state_dir: Path
    global_args: tuple[str, ...] = ()
    ulimits: tuple[str, ...] = ()
    images: ImagePresence = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", ImagePresence(self.command))

    def command(self, *args: str) -> list[str]:
        return [self.executable, *self.global_args, *args]


def container_runtime_problem(
    choice: ContainerRuntime, mode: str, *, root: bool, podman: str | None
) -> str | None:
    """Why containers cannot run in this mesh (None: they can). ``podman``: its path."""
    if choice == "none":
        return "--container-runtime none"
    if mode != "transparent":
        return (
            "explicit mode runs no containers (a container binds its ports on every "
            "address and does not use the sidecar as its proxy); use transparent mode"
        )
    if not root:
        return "podman containers need `pilotfish up` as root"
    if podman is None:
        return "podman is not installed"
    return None


def detect_podman(state_dir: Path, which: Callable[[str], str | None] = shutil.which) -> Podman:
    """The podman of this host, with the flags this host needs (see ``oci_runtime_args``)."""
    executable = which("podman")
    if executable is None:
        raise FileNotFoundError("podman is not installed")
    return Podman(
        executable,
        state_dir.resolve(),
        global_args=oci_runtime_args(which),
        ulimits=_ulimits(),
    )


def oci_runtime_args(
    which: Callable[[str], str | None], controllers_file: Path = _CGROUP_V2_IN_HYBRID
) -> tuple[str, ...]:
    """``--runtime runc`` on a host with hybrid cgroups whose v2 tree has controllers.

    crun (podman's default runtime on Debian) refuses that layout ("cgroups in
    hybrid mode not supported, drop all controllers from cgroupv2"); runc runs
    there. Elsewhere podman's configured runtime is used.
    """
    try:
        controllers = controllers_file.read_text(encoding="ascii").split()
    except OSError:
        return ()
    runc = which("runc")
    return ("--runtime", runc) if controllers and runc is not None else ()


def _ulimits() -> tuple[str, ...]:
    """The supervisor's own open-file and process limits, which a local process
    pod inherits, for the container too.

    Podman's defaults for a root caller (1048576 files, 4194304 processes) are
    above what root without CAP_SYS_RESOURCE may set, and the container would
    not start. The process limit is capped at the kernel's ``pid_max``: no
    more processes can exist, and podman runs with no more itself.
    """
    try:
        pid_max = int(_PID_MAX.read_text(encoding="ascii"))
    except (OSError, ValueError):
        pid_max = 4_194_304

    def capped(limits: tuple[int, int], ceiling: int) -> str:
        soft, hard = (ceiling if v == resource.RLIM_INFINITY or v > ceiling else v for v in limits)
        return f"{soft}:{hard}"

    files = capped(resource.getrlimit(resource.RLIMIT_NOFILE), 1_048_576)
    procs = capped(resource.getrlimit(resource.RLIMIT_NPROC), pid_max)
    return (f"nofile={files}", f"nproc={procs}")


class ImagePresence:
    """Which images are present in podman's local storage (see the module docstring)."""

    def __init__(
        self, command: Callable[..., list[str]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._command = command
        self._clock = clock
        self._present: set[str] = set()
        self._absent: dict[str, float] = {}  # image -> when it was found missing

    def present(self, image: str) -> bool | None:
        """True or False as last found; None if it was never asked."""
        if image in self._present:
            return True
        return False if image in self._absent else None

    async def refresh(self, images: Iterable[str]) -> None:
        """Ask podman about each image not known present (a missing one at most
        every ``ABSENT_RECHECK_S``)."""
        now = self._clock()
        due = sorted(
            {
                image
                for image in images
                if image not in self._present
                and now - self._absent.get(image, -ABSENT_RECHECK_S) >= ABSENT_RECHECK_S
            }
        )
        for image, found in zip(
            due, await asyncio.gather(*(self._exists(i) for i in due)), strict=True
        ):
            if found:
                self._present.add(image)
                self._absent.pop(image, None)
            else:
                self._absent[image] = now

    async def _exists(self, image: str) -> bool:
        code, _ = await _run(self._command("image", "exists", image))
        return code == 0


async def _run(argv: list[str]) -> tuple[int, str]:
    """Run a podman command; (exit code, its output). 127 when it cannot be started."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return 127, str(exc)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), _COMMAND_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return 124, f"{' '.join(argv)} timed out"
    return proc.returncode or 0, out.decode(errors="replace")


async def remove_container(podman: Podman, name: str) -> None:
    """Remove the container ``name`` whatever its state (nothing if there is none)."""
    code, out = await _run(podman.command("rm", "--force", "--ignore", "--time", "0", name))
    if code != 0:
        log.warning("could not remove container %s: %s", name, out.strip())


def remove_mesh_containers(
    state_dir: Path, which: Callable[[str], str | None] = shutil.which
) -> int:
    """Remove every container labelled with ``state_dir``'s mesh; returns how many.

    For teardown after a supervisor that is gone: a SIGKILLed ``podman run``
    leaves its container running. Needs root and podman (else 0).
    """
    executable = which("podman")
    if executable is None or os.geteuid() != 0:
        return 0
    label = f"label={STATE_DIR_LABEL}={state_dir.resolve()}"
    try:
        listed = subprocess.run(
            [executable, "ps", "--all", "--quiet", "--filter", label],
            capture_output=True,
            text=True,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )
        ids = listed.stdout.split()
        if ids:
            subprocess.run(
                [executable, "rm", "--force", "--ignore", "--time", "0", *ids],
                capture_output=True,
                timeout=_COMMAND_TIMEOUT_S,
                check=False,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not remove the mesh's containers: %s", exc)
        return 0
    return len(ids)
