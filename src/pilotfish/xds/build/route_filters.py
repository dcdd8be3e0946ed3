"""Per-route fault injection and CORS settings -> Envoy protos.

The connection manager runs the fault and CORS filters with empty
configuration (no faults, no CORS); each route that uses them carries its own
settings (built here) in ``typed_per_filter_config`` under the filter's name,
which is how Istio configures both. The filters themselves are registered in
``pilotfish.xds.build.http_filters``.
Percentages are Envoy ``FractionalPercent``s per million, so fractions such
as 0.1 % keep their precision.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from pilotfish import ir
from pilotfish.xds.build._common import duration_ms, string_matcher

__all__ = ["build_cors_policy", "build_fault", "fractional_percent"]


def fractional_percent(percent: float) -> percent_pb2.FractionalPercent:
    """``percent`` (0..100) as a per-million ``FractionalPercent``."""
    clamped = min(max(percent, 0.0), 100.0)
    return percent_pb2.FractionalPercent(
        numerator=round(clamped * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def build_fault(fault: ir.FaultPolicy) -> fault_pb2.HTTPFault:
    """A route's ``HTTPFault``: a fixed delay and/or an HTTP or gRPC abort."""
    proto = fault_pb2.HTTPFault()
    if fault.delay_ms is not None:
        proto.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=duration_ms(fault.delay_ms),
                percentage=fractional_percent(fault.delay_percent or 0.0),
            )
        )
    if fault.abort_percent is not None:
        abort = fault_pb2.FaultAbort(percentage=fractional_percent(fault.abort_percent))
        if fault.abort_http_status is not None:
            abort.http_status = fault.abort_http_status
        elif fault.abort_grpc_status is not None:
            abort.grpc_status = fault.abort_grpc_status
        else:
            raise ValueError("a fault abort needs an HTTP or a gRPC status")
        proto.abort.CopyFrom(abort)
    return proto


def build_cors_policy(cors: ir.CorsPolicy) -> cors_pb2.CorsPolicy:
    """A route's ``CorsPolicy`` (Istio's shape: methods and headers comma-joined,
    max age in seconds, the policy always enabled)."""
    proto = cors_pb2.CorsPolicy(
        allow_origin_string_match=[string_matcher(o) for o in cors.allow_origins],
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
        filter_enabled=base_pb2.RuntimeFractionalPercent(default_value=fractional_percent(100.0)),
        forward_not_matching_preflights=wrappers_pb2.BoolValue(
            value=cors.forward_unmatched_preflights
        ),
    )
    if cors.max_age_s is not None:
        proto.max_age = str(cors.max_age_s)
    if cors.allow_credentials is not None:
        proto.allow_credentials.value = cors.allow_credentials
    return proto
