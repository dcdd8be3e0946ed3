"""gRPC message counts for Istio's ``istio_request_messages_total`` and
``istio_response_messages_total``, with stock Envoy.

Envoy's own gRPC stats filter keeps the counts only as a ``"requests,responses"``
string that its stats access logger cannot add up, so a small Lua filter
(``lua/grpc_messages.lua``) counts the length-prefixed messages of each
direction as the body passes and leaves the numbers in the request's dynamic
metadata (``pilotfish.grpc``). The stats loggers of the gRPC variant add them
to the two counters (``xds/build/stats.py``).

The Lua filter is wrapped in Envoy's matching filter: requests whose
``content-type`` does not start with ``application/grpc`` skip it, so plain
HTTP pays nothing for it.
"""

from __future__ import annotations

from importlib import resources

from envoy.config.core.v3 import extension_pb2
from envoy.extensions.common.matching.v3 import extension_matcher_pb2
from envoy.extensions.filters.common.matcher.action.v3 import skip_action_pb2
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.type.matcher.v3 import http_inputs_pb2
from xds.type.matcher.v3 import matcher_pb2

from pilotfish.xds.build._common import any_of

__all__ = [
    "GRPC_MESSAGES_FILTER",
    "GRPC_MESSAGE_METRICS",
    "GRPC_METADATA_NAMESPACE",
    "build_grpc_message_counter",
    "message_count",
]

GRPC_MESSAGES_FILTER = "envoy.filters.http.match_delegate.grpc_messages"
GRPC_METADATA_NAMESPACE = "pilotfish.grpc"
#: The Istio metrics the counts feed.
GRPC_MESSAGE_METRICS = frozenset({"istio_request_messages_total", "istio_response_messages_total"})
_LUA = "envoy.filters.http.lua"


def message_count(direction: str) -> str:
    """The command operator reading the count of ``direction`` (request/response)."""
    return f"%DYNAMIC_METADATA({GRPC_METADATA_NAMESPACE}:{direction}_messages)%"


def _lua_source() -> str:
    return (resources.files("pilotfish.xds.build") / "lua" / "grpc_messages.lua").read_text("utf-8")


def _skip_unless_grpc() -> matcher_pb2.Matcher:
    """Skip the filter for every request that is not gRPC."""
    content_type = matcher_pb2.Matcher.MatcherList.Predicate.SinglePredicate()
    content_type.input.name = "content-type"
    content_type.input.typed_config.CopyFrom(
        any_of(http_inputs_pb2.HttpRequestHeaderMatchInput(header_name="content-type"))
    )
    content_type.value_match.prefix = "application/grpc"
    predicate = matcher_pb2.Matcher.MatcherList.Predicate()
    predicate.not_matcher.single_predicate.CopyFrom(content_type)
    field = matcher_pb2.Matcher.MatcherList.FieldMatcher(predicate=predicate)
    field.on_match.action.name = "skip"
    field.on_match.action.typed_config.CopyFrom(any_of(skip_action_pb2.SkipFilter()))
    matcher = matcher_pb2.Matcher()
    matcher.matcher_list.matchers.append(field)
    return matcher


def build_grpc_message_counter() -> extension_matcher_pb2.ExtensionWithMatcher:
    """The Lua message counter behind a gRPC-only matcher."""
    lua = lua_pb2.Lua()
    lua.default_source_code.inline_string = _lua_source()
    return extension_matcher_pb2.ExtensionWithMatcher(
        xds_matcher=_skip_unless_grpc(),
        extension_config=extension_pb2.TypedExtensionConfig(name=_LUA, typed_config=any_of(lua)),
    )
