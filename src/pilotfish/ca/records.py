"""What the CA issued: the newest certificate per pod, for status and expiry metrics."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

__all__ = ["IssuedRecord", "IssuedRecords"]


@dataclass(frozen=True, slots=True)
class IssuedRecord:
    """One issued workload certificate. ``serial`` is lower-case hex."""

    pod: str
    namespace: str
    service_account: str
    spiffe_id: str
    serial: str
    not_after: float  # unix seconds
    issued_at: float  # unix seconds


class IssuedRecords:
    """Keeps the newest record per pod (per SPIFFE id for tokens without a pod)."""

    def __init__(self) -> None:
        self._latest: dict[str, IssuedRecord] = {}
        self._lock = threading.Lock()

    def add(self, record: IssuedRecord) -> None:
        key = record.pod or record.spiffe_id
        with self._lock:
            self._latest[key] = record

    def forget(self, pod: str) -> None:
        """Drop the record of a pod that is gone."""
        with self._lock:
            self._latest.pop(pod, None)

    def issued(self) -> list[IssuedRecord]:
        """The newest record per pod, sorted by (namespace, pod, spiffe id)."""
        with self._lock:
            records = list(self._latest.values())
        return sorted(records, key=lambda r: (r.namespace, r.pod, r.spiffe_id))

    def for_pod(self, pod: str) -> IssuedRecord | None:
        with self._lock:
            return self._latest.get(pod)

    def expiring(self, within: float = 3600.0, now: float | None = None) -> int:
        """How many newest certificates are still valid but expire within ``within`` seconds."""
        now = time.time() if now is None else now
        with self._lock:
            return sum(1 for r in self._latest.values() if now < r.not_after <= now + within)
