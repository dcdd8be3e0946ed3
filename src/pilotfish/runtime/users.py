"""Unprivileged user ids for pods: one dedicated uid (and group of the same number) per pod.

A pod's app never runs as root and never with the proxy's id 1337. Without a
``securityContext.runAsUser`` the runtime gives each pod its own uid from a
reserved range, so pods cannot read each other's files, signal or trace each
other's processes. The allocation is kept in ``<state-dir>/users.json`` (root
only) and is stable for a pod name: a restarted pod, or a supervisor that
re-adopts a running mesh, finds the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pilotfish.api.runtime.workload import POD_ID_RANGE
from pilotfish.fsutil import atomic_write_text
from pilotfish.runtime.pod_spec import PodSpec, PodSpecError

__all__ = ["POD_ID_RANGE", "PodUser", "UserAllocator"]

_PROXY_ID = 1337


@dataclass(frozen=True, slots=True)
class PodUser:
    uid: int
    gid: int


class UserAllocator:
    """pod (``PodSpec.local_id``) -> ``PodUser``, persisted after every new allocation."""

    def __init__(self, path: Path, ids: range = POD_ID_RANGE) -> None:
        self._path = path
        self._ids = ids
        self._by_pod: dict[str, int] = self._load()

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, Mapping):
            return {}
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and v in self._ids}

    def _save(self) -> None:
        atomic_write_text(
            self._path, json.dumps(self._by_pod, indent=2, sort_keys=True), mode=0o600
        )

    def user_for(self, spec: PodSpec) -> PodUser:
        """The ids ``spec``'s app runs as: its ``securityContext``, else the pod's own uid.

        Raises ``PodSpecError`` for ids a pod may not take: root, the proxy's, or
        one from the range the runtime allocates (that would be another pod's).
        """
        for what, value in (("runAsUser", spec.run_as_user), ("runAsGroup", spec.run_as_group)):
            if value is None:
                continue
            if value in (0, _PROXY_ID):
                raise PodSpecError(f"pod {spec.name}: securityContext.{what} {value} is refused")
            if value in self._ids:
                raise PodSpecError(
                    f"pod {spec.name}: securityContext.{what} {value} lies in the range the "
                    f"runtime gives pods ({self._ids.start}-{self._ids.stop - 1})"
                )
        if spec.run_as_user is not None:
            return PodUser(spec.run_as_user, spec.run_as_group or spec.run_as_user)
        uid = self._allocate(spec.local_id)
        return PodUser(uid, spec.run_as_group or uid)

    def _allocate(self, pod: str) -> int:
        existing = self._by_pod.get(pod)
        if existing is not None:
            return existing
        taken = set(self._by_pod.values())
        uid = next((i for i in self._ids if i not in taken), None)
        if uid is None:
            raise PodSpecError(f"no free pod user id left in {self._ids.start}-{self._ids.stop}")
        self._by_pod[pod] = uid
        self._save()
        return uid
