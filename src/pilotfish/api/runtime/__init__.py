"""Kinds read by the local mesh runtime (``pilotfish.io/v1alpha1``)."""

from __future__ import annotations

from pilotfish.api.runtime.workload import (
    API_VERSION,
    ContainerPort,
    EnvVar,
    HTTPGetAction,
    Probe,
    RestartPolicy,
    TCPSocketAction,
    WorkloadSpec,
)

__all__ = [
    "API_VERSION",
    "ContainerPort",
    "EnvVar",
    "HTTPGetAction",
    "Probe",
    "RestartPolicy",
    "TCPSocketAction",
    "WorkloadSpec",
]
