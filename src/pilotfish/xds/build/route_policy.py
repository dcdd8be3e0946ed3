"""A virtual host's workload policy -> the security filters' per-route configs.

Theory of operation. Envoy keeps a listener's filter chains, with every HTTP
filter's configuration, for the connections opened on them: a changed
listener is a new listener, and connections already open (a client proxy's
pool, a browser's keep-alive) stay on the old one until its drain ends. A
route configuration sent over RDS is different: every connection manager
naming it, old chains included, switches to the new one for its next
request. So Pilotfish keeps the security filters of a workload's connection
manager fixed and sends what they enforce with the routes, under each
virtual host's ``typed_per_filter_config``:

- the three RBAC filters (DENY, ALLOW, AUDIT) are always present with no
  rules, which lets every request through; a virtual host whose workload has
  policies of an action carries ``RBACPerRoute`` with that action's rules,
  which replace the filter's for its requests;
- the ``jwt_authn`` filter holds the providers (issuer, keys, where tokens
  are read) and one named requirement, ``REQUEST_AUTHENTICATION`` (a token,
  if present, must be valid for one of them), but no rule; a virtual host
  names the requirement in ``PerRouteConfig``. Without it no token is checked.

What this cannot cover: the providers are the filter's own configuration, so
adding, changing or removing a provider (a RequestAuthentication's issuer or
keys) still changes the listener. Connections open on the old chains then
see the new routes with the old filter: a virtual host naming a requirement
the old filter lacks is answered 403 by ``jwt_authn`` (it fails closed), and
once the requirement is gone from the routes the old filter checks no token
either. Authorization of TCP proxies (network RBAC) is listener
configuration as well.

PeerAuthentication decides a chain's TLS, which Envoy fixes for a connection
at its handshake: a change of mode is a listener change and always will be.
What the routes can carry is the authorization side of STRICT: a virtual
host of a STRICT port has a DENY policy (``STRICT_MTLS_POLICY``) for
requests without a verified client certificate, so a plaintext connection
opened while the port was PERMISSIVE is refused at its next request instead
of being served until the drain ends. See docs/architecture.md.
"""

from __future__ import annotations

from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2

from pilotfish import ir
from pilotfish.xds.build.rbac import RbacAction, build_rbac

__all__ = [
    "REQUEST_AUTHENTICATION",
    "STRICT_MTLS_POLICY",
    "build_jwt_per_route",
    "build_rbac_per_route",
]

# The name of the jwt_authn requirement every virtual host of a workload with a
# RequestAuthentication names.
REQUEST_AUTHENTICATION = "request_authentication"
# The DENY policy of a PeerAuthentication STRICT port (see ``ir.RoutePolicy``).
STRICT_MTLS_POLICY = "peer-authentication-strict"


def _plaintext_denied() -> rbac_pb2.Policy:
    """Any request on a connection that presented no verified client certificate."""
    authenticated = rbac_pb2.Principal(authenticated=rbac_pb2.Principal.Authenticated())
    return rbac_pb2.Policy(
        permissions=[rbac_pb2.Permission(any=True)],
        principals=[rbac_pb2.Principal(not_id=authenticated)],
    )


def build_rbac_per_route(
    vhost: ir.VirtualHost, action: RbacAction
) -> rbac_filter_pb2.RBACPerRoute | None:
    """The ``action`` RBAC filter's settings for ``vhost``: its workload's rules
    of that action (for DENY also STRICT mTLS), or None when it has none (the
    filter then lets all pass)."""
    policy = vhost.policy
    if policy is None:
        return None
    strict = action == "DENY" and policy.require_mtls
    if not strict and not any(p.action == action for p in policy.authz):
        return None
    config = build_rbac(policy.authz, action)
    if strict:
        config.rules.policies[STRICT_MTLS_POLICY].CopyFrom(_plaintext_denied())
    return rbac_filter_pb2.RBACPerRoute(rbac=config)


def build_jwt_per_route(vhost: ir.VirtualHost) -> jwt_pb2.PerRouteConfig | None:
    """The ``jwt_authn`` settings for ``vhost``: the workload's requirement, or
    None when it has no RequestAuthentication (no token is checked)."""
    if vhost.policy is None or not vhost.policy.jwt:
        return None
    return jwt_pb2.PerRouteConfig(requirement_name=REQUEST_AUTHENTICATION)
