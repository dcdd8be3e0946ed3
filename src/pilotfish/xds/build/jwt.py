"""IR JWT authentication -> Envoy ``envoy.filters.http.jwt_authn`` filter.

Istio's RequestAuthentication semantics: a request carrying a token must
present one that is valid for one of the providers (else 401); a request
without a token passes this filter, and an AuthorizationPolicy asking for
``requestPrincipals`` then denies it. In Envoy terms: a requirement of
``requires_any`` of every provider plus ``allow_missing``, for every path (one
rule) or, on a workload's connection manager, for the routes that name it.

A verified token's payload goes to dynamic metadata under
``JWT_PAYLOAD_METADATA`` (the same key for every provider), where the RBAC
filters read ``iss``, ``sub`` and other claims.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf import empty_pb2

from pilotfish.ir.security import JwtAuthn, JwtProvider
from pilotfish.xds.build.rbac import JWT_FILTER_NAME, JWT_PAYLOAD_METADATA
from pilotfish.xds.build.route_policy import REQUEST_AUTHENTICATION

__all__ = [
    "JWT_FILTER_NAME",
    "JWT_PAYLOAD_METADATA",
    "build_jwt_authn",
    "build_jwt_provider",
]


def build_jwt_provider(
    provider: JwtProvider, clear_route_cache: bool = False
) -> jwt_pb2.JwtProvider:
    """One provider; its JWKS is inline (the control plane fetched any ``jwksUri``)."""
    proto = jwt_pb2.JwtProvider(
        issuer=provider.issuer,
        audiences=list(provider.audiences),
        local_jwks=base_pb2.DataSource(inline_string=provider.jwks),
        forward=provider.forward,
        from_params=list(provider.from_params),
        forward_payload_header=provider.output_payload_to_header,
        payload_in_metadata=JWT_PAYLOAD_METADATA,
        clear_route_cache=clear_route_cache,
    )
    for header in provider.from_headers:
        proto.from_headers.append(jwt_pb2.JwtHeader(name=header.name, value_prefix=header.prefix))
    return proto


def build_jwt_authn(jwt: JwtAuthn, *, per_route: bool = False) -> jwt_pb2.JwtAuthentication:
    """The filter config: every provider, and a requirement that rejects invalid
    tokens but lets requests without a token through.

    The requirement applies to all paths (one rule), or with ``per_route`` only
    where a route names it (``requirement_map``, see ``xds/build/route_policy.py``).
    """
    config = jwt_pb2.JwtAuthentication()
    requirements = [jwt_pb2.JwtRequirement(provider_name=p.name) for p in jwt.providers]
    requirements.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    for provider in jwt.providers:
        config.providers[provider.name].CopyFrom(
            build_jwt_provider(provider, jwt.clear_route_cache)
        )
    requirement = jwt_pb2.JwtRequirement(
        requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements)
    )
    if per_route:
        config.requirement_map[REQUEST_AUTHENTICATION].CopyFrom(requirement)
    else:
        config.rules.append(
            jwt_pb2.RequirementRule(match=route_pb2.RouteMatch(prefix="/"), requires=requirement)
        )
    return config
