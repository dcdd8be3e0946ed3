"""DeltaDiscoveryResponse wire encoding from pre-serialized resources.

Theory of operation: as for SotW (``encode``), a response is a few
length-delimited fields written by hand around bytes that already exist. A
delta response wraps each resource in a ``Resource`` message (name, version,
the serialized ``Any``), so the body of a whole set, one ``Resource`` entry
per resource, is built once per ``ResourceSet`` object and shared by every
stream that gets the whole set (the initial push of a thousand proxies with
the same view is one encoding). The per-resource versions come from the set
itself (``ResourceSet.versions``), computed once per set. Each stream adds
its header (``system_version_info``, ``type_url``, ``nonce``) and, when there
are any, its ``removed_resources``.

Streams with the same view get the same responses (every stream's initial
fetch; the changed route configuration after an edit), and a response's nonce
is derived from what it carries (``delta_stream.shared_nonce``), so its whole
frame is the same bytes on every stream. Those frames are kept too, per set
object and nonce, within a byte budget (least recently used first out), so a
push of one set to a thousand streams builds its frame once and hands gRPC the
same bytes object each time, instead of joining a multi-megabyte copy per
stream.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from pilotfish.xds.server.encode import ResponseEncoder
from pilotfish.xds.server.state import Response
from pilotfish.xds.types import ResourceSet

__all__ = ["DeltaResponseEncoder", "encode_delta_response", "encode_resource_entries"]

# DeltaDiscoveryResponse: system_version_info = 1, resources = 2, type_url = 4,
# nonce = 5, removed_resources = 6. Resource: version = 1, resource = 2, name = 3.
_TAG_SYSTEM_VERSION = b"\x0a"
_TAG_RESOURCES = b"\x12"
_TAG_TYPE_URL = b"\x22"
_TAG_NONCE = b"\x2a"
_TAG_REMOVED = b"\x32"
_TAG_R_VERSION = b"\x0a"
_TAG_R_RESOURCE = b"\x12"
_TAG_R_NAME = b"\x1a"
# Responses naming at most this many resources are encoded per stream: one or two
# load assignments after an endpoint change cost less to build than to look up.
_UNSHARED_NAMES = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, raw: bytes) -> bytes:
    return tag + _varint(len(raw)) + raw


def encode_resource_entries(resource_set: ResourceSet, names: Iterable[str]) -> bytes:
    """Repeated ``resources`` (field 2) entries: one ``Resource`` per name."""
    resources = resource_set.resources
    versions = resource_set.versions()
    parts: list[bytes] = []
    append = parts.append
    for name in names:
        entry = b"".join(
            (
                _field(_TAG_R_VERSION, versions[name].encode()),
                _field(_TAG_R_RESOURCE, resources[name]),
                _field(_TAG_R_NAME, name.encode()),
            )
        )
        append(_field(_TAG_RESOURCES, entry))
    return b"".join(parts)


def encode_delta_response(
    system_version: str,
    type_url: str,
    nonce: str,
    removed: Iterable[str],
    *bodies: bytes,
) -> bytes:
    """A complete serialized DeltaDiscoveryResponse around pre-encoded resource entries."""
    head = [_field(_TAG_SYSTEM_VERSION, system_version.encode())] if system_version else []
    tail = [_field(_TAG_TYPE_URL, type_url.encode()), _field(_TAG_NONCE, nonce.encode())]
    tail.extend(_field(_TAG_REMOVED, name.encode()) for name in removed)
    return b"".join((*head, *bodies, *tail))


class DeltaResponseEncoder(ResponseEncoder):
    """``ResponseEncoder`` (same per-set body cache) writing delta responses, with
    whole frames of shared-nonce responses cached within ``frame_budget`` bytes."""

    def __init__(self, max_entries: int = 1024, frame_budget: int = 64 * 1024 * 1024) -> None:
        super().__init__(max_entries)
        self._frame_budget = frame_budget
        self._frames: OrderedDict[tuple[int, str], tuple[ResourceSet, bytes]] = OrderedDict()
        self._frame_bytes = 0
        self.frame_hits = 0

    def encode(self, response: Response) -> bytes:
        source = response.source
        if response.names is not None and response.resource_count <= _UNSHARED_NAMES:
            return super().encode(response)  # a small update: cheaper to build again
        if not response.shared:
            return super().encode(response)  # its nonce is this stream's own
        key = (id(source), response.nonce)
        entry = self._frames.get(key)
        if entry is not None and entry[0] is source:
            self._frames.move_to_end(key)
            self.frame_hits += 1
            return entry[1]
        frame = super().encode(response)
        if len(frame) <= self._frame_budget:
            self._frames[key] = (source, frame)
            self._frame_bytes += len(frame)
            while self._frame_bytes > self._frame_budget:
                _, (_, dropped) = self._frames.popitem(last=False)
                self._frame_bytes -= len(dropped)
        return frame

    def clear(self) -> None:
        super().clear()
        self._frames.clear()
        self._frame_bytes = 0

    def _encode_names(self, resource_set: ResourceSet, names: Iterable[str]) -> bytes:
        return encode_resource_entries(resource_set, names)

    def _frame(self, response: Response, bodies: list[bytes]) -> bytes:
        return encode_delta_response(
            response.version, response.type_url, response.nonce, response.removed, *bodies
        )
