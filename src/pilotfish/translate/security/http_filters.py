"""Put a workload's JWT and authorization settings on an HTTP connection manager.

The security filters run before every other HTTP filter, in the order
``jwt_authn`` (so JWT claims are known), ``rbac_deny``, ``rbac_allow``,
``rbac_audit``; each is present only when something needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pilotfish.ir import HttpConnectionManager
from pilotfish.ir.security import AuthzPolicy, JwtAuthn
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.security.authz import authz_policies
from pilotfish.translate.security.jwt import jwt_authn

__all__ = ["security_filter_names", "with_workload_security"]

_RBAC_FILTERS = (("DENY", "rbac_deny"), ("ALLOW", "rbac_allow"), ("AUDIT", "rbac_audit"))


def security_filter_names(jwt: JwtAuthn | None, authz: tuple[AuthzPolicy, ...]) -> tuple[str, ...]:
    """The registry names of the security HTTP filters, in their order."""
    actions = {p.action for p in authz}
    names = ["jwt_authn"] if jwt is not None else []
    names.extend(name for action, name in _RBAC_FILTERS if action in actions)
    return tuple(names)


def with_workload_security(
    hcm: HttpConnectionManager,
    snapshot: Snapshot,
    namespace: str,
    labels: Mapping[str, str],
    port: int,
) -> HttpConnectionManager:
    """``hcm`` enforcing the RequestAuthentications and AuthorizationPolicies of the
    workload (``namespace``, ``labels``) for requests arriving on ``port``."""
    jwt = jwt_authn(snapshot, namespace, labels)
    authz = authz_policies(snapshot, namespace, labels, port)
    names = security_filter_names(jwt, authz)
    if not names:
        return hcm
    return replace(hcm, jwt=jwt, authz=authz, http_filters=names + hcm.http_filters)
