"""The rows ``/runtime/pods`` serves (``pilotfish status``, ``describe``): pods and gateways.

A gateway's row has the same fields as a pod's (``PodStatus``) so that
clients treat both alike: its agent is the "sidecar" (pid, readiness from its
health endpoint, restarts), it has no app (``app_pid`` None), and
``gateway`` is True. Both carry the identity the CA last issued to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pilotfish.ca.records import IssuedRecord
from pilotfish.runtime.gateways import GatewayProcess
from pilotfish.runtime.pod_lifecycle import PodStatus

__all__ = ["gateway_row", "identities_by_owner", "pod_row"]


def _identity(record: IssuedRecord | None) -> dict[str, Any]:
    return {
        "identity": record.spiffe_id if record is not None else "",
        "cert_expires": record.not_after if record is not None else None,
        "cert_serial": record.serial if record is not None else "",
    }


def pod_row(
    status: PodStatus, record: IssuedRecord | None, dataplane: str = "sidecar"
) -> dict[str, Any]:
    """A pod's row: its status, with ``gateway`` False, its data-plane mode (``sidecar``;
    ``ambient``: no sidecar, the node proxy carries its traffic; ``none``: out of the
    mesh, no proxy at all) and its identity.
    An ambient pod's identity is the one the CA issued to the node proxy for it."""
    return {**status.to_json(), "gateway": False, "dataplane": dataplane, **_identity(record)}


def gateway_row(
    gateway: GatewayProcess, ready: bool | None, record: IssuedRecord | None
) -> dict[str, Any]:
    """A gateway's row; ``ready``: its health endpoint's answer (None: not asked)."""
    spec = gateway.spec
    pid = gateway.pid
    running = pid is not None
    return {
        "name": spec.name,
        "workload": spec.name,
        "namespace": spec.namespace,
        "ip": spec.ip,
        "phase": "Running" if running else "Pending",
        "ready": ready if running else False,
        "restarts": gateway.restarts,
        "sidecar_ready": bool(ready) and running,
        "app_pid": None,
        "sidecar_pid": pid,
        "started_at": None,
        "last_exit_code": None,
        "message": "" if running else "gateway agent not running (restarting)",
        "gateway": True,
        "dataplane": gateway.role,
        **_identity(record),
    }


def identities_by_owner(records: list[IssuedRecord]) -> Mapping[str, IssuedRecord]:
    """The CA's newest record per owner (pod local id or gateway name)."""
    return {r.pod: r for r in records}
