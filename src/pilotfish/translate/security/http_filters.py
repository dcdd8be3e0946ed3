"""Put a workload's JWT and authorization settings on an HTTP connection manager.

The security filters (JWT validation, then RBAC by action) and their order
are registered with every other HTTP filter in
``pilotfish.xds.build.http_filters``; this module finds the settings that
apply to the workload and lets the registry list the filters they need. The
settings themselves reach Envoy with the routes (``route_policy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pilotfish.ir import HttpConnectionManager
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.security.authz import authz_policies
from pilotfish.translate.security.jwt import jwt_authn
from pilotfish.xds.build.http_filters import with_http_filters

__all__ = ["with_workload_security"]


def with_workload_security(
    hcm: HttpConnectionManager,
    snapshot: Snapshot,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
    *,
    gateway: bool = False,
) -> HttpConnectionManager:
    """``hcm`` enforcing the RequestAuthentications and AuthorizationPolicies of the
    workload (``namespace``, ``labels``) for requests arriving on ``port``. On a
    ``gateway``, routes are chosen again after JWT validation (they may match
    claims), as Istio does.

    The policy is enforced per route (``policy_per_route``): ``hcm`` gets the
    RBAC filters even without policies, so that applying one later changes
    only its routes (``translate/security/route_policy.py`` puts it there)."""
    jwt = jwt_authn(snapshot, namespace, labels)
    if jwt is not None and gateway:
        jwt = replace(jwt, clear_route_cache=True)
    authz = authz_policies(snapshot, namespace, labels, port)
    return with_http_filters(replace(hcm, jwt=jwt, authz=authz, policy_per_route=True))
