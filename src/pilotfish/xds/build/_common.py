"""Small helpers shared by the proto builders (private to ``xds/build``)."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from pilotfish import ir

__all__ = [
    "TYPE_URL_PREFIX",
    "ads_config_source",
    "any_of",
    "duration_ms",
    "regex_matcher",
    "string_matcher",
    "type_url_of",
]

TYPE_URL_PREFIX = "type.googleapis.com/"


def type_url_of(message: Message) -> str:
    """The ``google.protobuf.Any`` type URL of ``message``'s type."""
    return TYPE_URL_PREFIX + str(message.DESCRIPTOR.full_name)


def any_of(message: Message) -> any_pb2.Any:
    """Wrap ``message`` in an ``Any``, serialized deterministically.

    ``Any.Pack`` would do the same but its determinism flag is easy to forget;
    every nested ``typed_config`` goes through here so that equal IR always
    gives equal bytes.
    """
    return any_pb2.Any(
        type_url=type_url_of(message), value=message.SerializeToString(deterministic=True)
    )


def duration_ms(milliseconds: int) -> duration_pb2.Duration:
    """A ``Duration`` of ``milliseconds`` (0 gives an explicit, present ``0s``)."""
    seconds, millis = divmod(milliseconds, 1000)
    return duration_pb2.Duration(seconds=seconds, nanos=millis * 1_000_000)


def ads_config_source() -> config_source_pb2.ConfigSource:
    """``{ads: {}, resource_api_version: V3}``: fetch over the proxy's ADS stream."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def regex_matcher(pattern: str, *, ignore_case: bool = False) -> regex_pb2.RegexMatcher:
    """A RE2 ``RegexMatcher``.

    The engine is not named: ``google_re2`` is deprecated in Envoy's v3 API and
    RE2 is the default engine. RE2 has no case-insensitive flag on the matcher,
    so ``ignore_case`` is expressed inline with ``(?i)``.
    """
    return regex_pb2.RegexMatcher(regex=f"(?i){pattern}" if ignore_case else pattern)


def string_matcher(match: ir.StringMatch) -> string_pb2.StringMatcher:
    """An Envoy ``StringMatcher`` for an IR ``StringMatch``."""
    if match.kind == "exact":
        return string_pb2.StringMatcher(exact=match.value, ignore_case=match.ignore_case)
    if match.kind == "prefix":
        return string_pb2.StringMatcher(prefix=match.value, ignore_case=match.ignore_case)
    return string_pb2.StringMatcher(
        safe_regex=regex_matcher(match.value, ignore_case=match.ignore_case)
    )
