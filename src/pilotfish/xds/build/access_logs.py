"""IR access logs -> Envoy file access loggers (HTTP connection managers, TCP proxies).

A log is written to its ``path`` in Istio's default TEXT line, Istio's default
JSON object, or the format the mesh config or provider gave (for JSON, a JSON
object mapping keys to format strings). A CEL ``filter`` becomes Envoy's CEL
extension filter: only requests for which it is true are logged.
"""

from __future__ import annotations

import json

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from google.protobuf import struct_pb2

from pilotfish import ir
from pilotfish.xds.build._common import any_of

__all__ = ["ACCESS_LOG_FORMAT", "JSON_LOG_FIELDS", "build_access_log", "build_access_logs"]

_FILE_ACCESS_LOG = "envoy.access_loggers.file"
_CEL_FILTER = "envoy.access_loggers.extension_filters.cel"

# The fields of Istio's default TEXT access log, in its order.
ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

# Istio's default JSON access log: the same values as the TEXT line, by key.
JSON_LOG_FIELDS: tuple[tuple[str, str], ...] = (
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
)


def _format(log: ir.AccessLog) -> substitution_format_string_pb2.SubstitutionFormatString:
    if log.encoding == "JSON":
        fields = dict(JSON_LOG_FIELDS) if not log.text_format else json.loads(log.text_format)
        shape = struct_pb2.Struct()
        shape.update(fields)
        return substitution_format_string_pb2.SubstitutionFormatString(json_format=shape)
    text = log.text_format or ACCESS_LOG_FORMAT
    if not text.endswith("\n"):
        text += "\n"  # one line per request, as Envoy's default format
    return substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=text)
    )


def build_access_log(log: ir.AccessLog | None = None) -> accesslog_pb2.AccessLog:
    """One file access logger (default: Istio's TEXT line to stdout)."""
    log = log if log is not None else ir.AccessLog()
    file_log = file_pb2.FileAccessLog(path=log.path, log_format=_format(log))
    proto = accesslog_pb2.AccessLog(name=_FILE_ACCESS_LOG, typed_config=any_of(file_log))
    if log.filter:
        proto.filter.extension_filter.name = _CEL_FILTER
        proto.filter.extension_filter.typed_config.CopyFrom(
            any_of(cel_pb2.ExpressionFilter(expression=log.filter))
        )
    return proto


def build_access_logs(logs: tuple[ir.AccessLog, ...]) -> list[accesslog_pb2.AccessLog]:
    return [build_access_log(log) for log in logs]
