"""The SDS names of a workload's own certificate, shared by the agent and the IR.

The proxy asks its agent for ``default`` (the workload certificate and key)
and ``ROOTCA`` (the mesh root), Istio's names. They live apart from
``pilotfish.ir`` because importing one constant from there loads every IR
module, and the agent, started once per proxy, needs only these two.
"""

from __future__ import annotations

__all__ = ["SDS_ROOT_CA", "SDS_WORKLOAD_CERT"]

SDS_WORKLOAD_CERT = "default"
SDS_ROOT_CA = "ROOTCA"
