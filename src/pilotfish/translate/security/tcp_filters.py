"""Put a workload's authorization policies on a TCP proxy (non-HTTP ports).

The policies are translated for plain TCP connections (``authz_policies(...,
tcp=True)``: HTTP-only fields handled as in Istio) and become network RBAC
filters in front of ``tcp_proxy`` when the listener is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pilotfish.ir import TcpProxy
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.security.authz import authz_policies

__all__ = ["with_tcp_workload_authz"]


def with_tcp_workload_authz(
    proxy: TcpProxy,
    snapshot: Snapshot,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
) -> TcpProxy:
    """``proxy`` enforcing the AuthorizationPolicies of the workload (``namespace``,
    ``labels``) for connections arriving on ``port``; unchanged without policies."""
    authz = authz_policies(snapshot, namespace, labels, port, tcp=True)
    if not authz:
        return proxy
    return replace(proxy, authz=authz)
