"""A pod's lifecycle decisions and its reported status, as pure functions and frozen data."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pilotfish.runtime.pod_spec import RestartPolicy

__all__ = ["Phase", "PodStatus", "completion_phase", "pod_ready", "should_restart"]

Phase = Literal["Pending", "Running", "Succeeded", "Failed"]


def should_restart(policy: RestartPolicy, exit_code: int | None) -> bool:
    """Whether an app that exited with ``exit_code`` is started again (Kubernetes' rules).

    ``Always``: every exit; ``OnFailure``: non-zero exits (a signal counts as a
    failure, and so does an unknown code, None: the exit of a process adopted
    from an earlier supervisor, whose code only its parent could learn);
    ``Never``: none, the pod completes.
    """
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def completion_phase(exit_code: int | None) -> Phase:
    """Phase of a pod whose app exited for good: ``Succeeded`` only for exit code 0
    (an unknown code cannot prove success)."""
    return "Succeeded" if exit_code == 0 else "Failed"


def pod_ready(
    *, phase: Phase, stopping: bool, app_running: bool, sidecar_ready: bool, probe_ready: bool
) -> bool:
    """A pod serves traffic only while running, its app is up, its sidecar is ready
    and its readiness probe passes (``probe_ready`` is True for a pod without one)."""
    return phase == "Running" and not stopping and app_running and sidecar_ready and probe_ready


@dataclass(frozen=True, slots=True)
class PodStatus:
    """What the supervisor and ``pilotfish status`` report about one pod.

    ``started_at`` is the Unix time ``start()`` began (None before); pids are
    None while the process is not running; ``last_exit_code`` is the app's
    latest exit code (negative: killed by that signal).
    """

    name: str
    workload: str
    namespace: str
    ip: str
    phase: Phase
    ready: bool
    restarts: int
    sidecar_ready: bool
    app_pid: int | None
    sidecar_pid: int | None
    started_at: float | None
    last_exit_code: int | None
    message: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-compatible dict with the field names above (snake_case)."""
        return asdict(self)
