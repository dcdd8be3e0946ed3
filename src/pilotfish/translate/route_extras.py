"""VirtualService HTTP rule extras -> IR: fault injection, mirroring, CORS, retry details.

Theory of operation: these settings hang off a route (``ir.Route.fault`` /
``ir.Route.cors``, ``ir.ForwardAction.mirrors``) and follow Istio's
translation:

- ``fault``: a missing ``percentage`` means "no request" (0 %), as in Istio;
  the deprecated integer ``delay.percent`` is used when ``percentage`` is not
  set. ``abort.grpcStatus`` takes a gRPC status name (``UNAVAILABLE``) or its
  number. Faults need Envoy's fault filter on the connection manager:
  ``translate.route_filters`` adds it wherever a route carries a fault.
- ``mirror`` (+ ``mirrorPercentage`` or the deprecated ``mirror_percent``) and
  ``mirrors`` (each with its own ``percentage``) become Envoy request mirror
  policies; a missing percentage mirrors every request. Envoy marks the copy
  by appending ``-shadow`` to its Host and drops the shadow's answer.
- ``corsPolicy``: ``allowOrigins`` string matches (plus the deprecated exact
  ``allowOrigin`` strings); ``unmatchedPreflights: IGNORE`` answers preflights
  that do not match locally, anything else forwards them (Istio's default).
- ``retries``: ``backoff`` is the base interval of Envoy's back-off;
  ``retryRemoteLocalities`` prefers hosts of other localities on retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pilotfish.api.duration import parse_duration_ms
from pilotfish.api.networking.common import Destination, Percent
from pilotfish.api.networking.virtual_service import CorsPolicy, HTTPFaultInjection, HTTPRoute
from pilotfish.api.resource import Resource
from pilotfish.ir import CorsPolicy as IrCorsPolicy
from pilotfish.ir import FaultPolicy, MirrorPolicy
from pilotfish.ir import StringMatch as IrStringMatch

__all__ = [
    "GRPC_STATUS_CODES",
    "ClusterOf",
    "cors_policy",
    "fault_policy",
    "grpc_status_code",
    "mirrors",
]

log = logging.getLogger("pilotfish.translate")

# (destination, VirtualService naming it) -> its cluster name.
ClusterOf = Callable[[Destination, Resource], str]

# gRPC status names (as Istio's grpcStatus takes them) -> codes.
GRPC_STATUS_CODES: dict[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


def grpc_status_code(status: str) -> int | None:
    """The code of a gRPC status name (any case) or number; None when unknown."""
    text = status.strip()
    if text.isdigit():
        code = int(text)
        return code if code <= 16 else None
    return GRPC_STATUS_CODES.get(text.upper())


def _percent(p: Percent | None, fallback: float) -> float:
    return min(max(p.value, 0.0), 100.0) if p is not None else fallback


def fault_policy(fault: HTTPFaultInjection | None, where: str) -> FaultPolicy | None:
    """The IR fault of a rule, or None when it injects nothing Envoy can express.

    ``where`` names the rule in log messages (``ns/vs/rule``)."""
    if fault is None:
        return None
    delay_ms = delay_percent = None
    if fault.delay is not None and fault.delay.fixed_delay:
        delay_ms = parse_duration_ms(fault.delay.fixed_delay)
        deprecated = float(fault.delay.percent or 0)
        delay_percent = _percent(fault.delay.percentage, deprecated)
    http_status = grpc_status = abort_percent = None
    abort = fault.abort
    if abort is not None:
        if abort.http_status is not None:
            http_status = abort.http_status
        elif abort.grpc_status is not None:
            grpc_status = grpc_status_code(abort.grpc_status)
            if grpc_status is None:
                log.warning("%s: unknown grpcStatus %r; abort left out", where, abort.grpc_status)
        if http_status is not None or grpc_status is not None:
            abort_percent = _percent(abort.percentage, 0.0)
    if delay_ms is None and abort_percent is None:
        return None
    return FaultPolicy(
        delay_ms=delay_ms,
        delay_percent=delay_percent,
        abort_http_status=http_status,
        abort_grpc_status=grpc_status,
        abort_percent=abort_percent,
    )


def mirrors(rule: HTTPRoute, vs: Resource, cluster_of: ClusterOf) -> tuple[MirrorPolicy, ...]:
    """The mirror policies of a rule; ``cluster_of`` names a destination's cluster."""
    out: list[MirrorPolicy] = []
    if rule.mirror is not None:
        if rule.mirror_percentage is not None:
            percent = _percent(rule.mirror_percentage, 100.0)
        elif rule.mirror_percent is not None:
            percent = float(min(max(rule.mirror_percent, 0), 100))
        else:
            percent = 100.0
        out.append(MirrorPolicy(cluster_of(rule.mirror, vs), percent))
    for m in rule.mirrors:
        out.append(MirrorPolicy(cluster_of(m.destination, vs), _percent(m.percentage, 100.0)))
    return tuple(out)


def _origin(m: object) -> IrStringMatch | None:
    for kind in ("exact", "prefix", "regex"):
        value = getattr(m, kind, None)
        if value is not None:
            return IrStringMatch(kind, value)
    return None


def cors_policy(cors: CorsPolicy | None) -> IrCorsPolicy | None:
    """The IR CORS policy of a rule (None when the rule has none)."""
    if cors is None:
        return None
    origins = [o for o in (_origin(m) for m in cors.allow_origins) if o is not None]
    origins += [IrStringMatch("exact", o) for o in cors.allow_origin]
    max_age = None
    if cors.max_age is not None:
        max_age = parse_duration_ms(cors.max_age) // 1000
    return IrCorsPolicy(
        allow_origins=tuple(origins),
        allow_methods=tuple(cors.allow_methods),
        allow_headers=tuple(cors.allow_headers),
        expose_headers=tuple(cors.expose_headers),
        max_age_s=max_age,
        allow_credentials=cors.allow_credentials,
        forward_unmatched_preflights=cors.unmatched_preflights != "IGNORE",
    )
