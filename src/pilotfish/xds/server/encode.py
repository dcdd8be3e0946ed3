"""DiscoveryResponse wire encoding from pre-serialized resources.

Theory of operation: a DiscoveryResponse is a handful of length-delimited
fields, and protobuf lets fields appear in any order and be concatenated. The
bulk of a response is the repeated ``resources`` field (number 2), one
serialized ``google.protobuf.Any`` per resource; those bytes already exist in
``ResourceSet.resources`` and are shared by every proxy that gets the set. So
the body (the encoded field 2 entries) is built once per ResourceSet object
and cached, and each stream only adds its own small header: ``version_info``
(1), ``type_url`` (4) and ``nonce`` (5). No protobuf message is built or
re-serialized per proxy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from pilotfish.xds.server.state import Response
from pilotfish.xds.types import ResourceSet

__all__ = ["ResponseEncoder", "encode_body", "encode_response"]

# Wire tags: (field_number << 3) | 2 (length-delimited).
_TAG_VERSION_INFO = b"\x0a"
_TAG_RESOURCES = b"\x12"
_TAG_TYPE_URL = b"\x22"
_TAG_NONCE = b"\x2a"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths below 128 are one byte; precompute them to keep small resources cheap.
_SMALL_VARINTS = tuple(bytes((n,)) for n in range(128))


def _length_prefix(length: int) -> bytes:
    return _SMALL_VARINTS[length] if length < 128 else _varint(length)


def _string_field(tag: bytes, value: str) -> bytes:
    if not value:
        return b""  # proto3 default: omitted
    raw = value.encode()
    return tag + _length_prefix(len(raw)) + raw


def encode_body(resources: Iterable[bytes]) -> bytes:
    """Encode serialized ``Any`` messages as repeated field 2 entries."""
    parts: list[bytes] = []
    append = parts.append
    for any_bytes in resources:
        append(_TAG_RESOURCES)
        append(_length_prefix(len(any_bytes)))
        append(any_bytes)
    return b"".join(parts)


def encode_response(version: str, type_url: str, nonce: str, *bodies: bytes) -> bytes:
    """A complete serialized DiscoveryResponse around pre-encoded body chunks.

    Chunks of repeated field 2 simply concatenate, so a set composed of parts
    is the concatenation of its parts' bodies.
    """
    return b"".join(
        (
            _string_field(_TAG_VERSION_INFO, version),
            *bodies,
            _string_field(_TAG_TYPE_URL, type_url),
            _string_field(_TAG_NONCE, nonce),
        )
    )


class ResponseEncoder:
    """Encodes planned responses, caching whole-set bodies per ResourceSet object.

    The cache is keyed by object identity (ResourceSet is neither hashable nor
    weak-referenceable); each entry keeps its set alive so an id cannot be
    reused while cached. Least recently used entries beyond ``max_entries``
    are dropped, which only costs a re-encode. A set built by
    ``ResourceSet.compose`` is encoded as its parts' cached bodies, so parts
    shared by many views (say, a namespace's outbound clusters) are encoded
    once, and the per-view composition costs one copy when written.
    Responses that carry a subset of a set (EDS/RDS partial updates) are
    encoded directly; they are small.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max_entries = max_entries
        self._bodies: OrderedDict[int, tuple[ResourceSet, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._bodies)

    def bodies_of(self, resource_set: ResourceSet) -> list[bytes]:
        """Encoded body chunks of a whole set: one per part for composed sets."""
        if not resource_set.parts:
            return [self.body_of(resource_set)]
        chunks: list[bytes] = []
        for part in resource_set.parts:
            chunks.extend(self.bodies_of(part))
        return chunks

    def body_of(self, resource_set: ResourceSet) -> bytes:
        """The encoded resources of a (non-composed) set, built once per set object."""
        key = id(resource_set)
        entry = self._bodies.get(key)
        if entry is not None and entry[0] is resource_set:
            self._bodies.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        body = self._encode_names(resource_set, sorted(resource_set.resources))
        self._bodies[key] = (resource_set, body)
        self._bodies.move_to_end(key)
        while len(self._bodies) > self._max_entries:
            self._bodies.popitem(last=False)
        return body

    def encode(self, response: Response) -> bytes:
        """The serialized DiscoveryResponse for a planned response."""
        if response.names is None:
            bodies = self.bodies_of(response.source)
        else:
            bodies = [self._encode_names(response.source, response.names)]
        return self._frame(response, bodies)

    # What a protocol variant (delta) overrides: the resource entries and the frame.

    def _encode_names(self, resource_set: ResourceSet, names: Iterable[str]) -> bytes:
        resources = resource_set.resources
        return encode_body(resources[name] for name in names)

    def _frame(self, response: Response, bodies: list[bytes]) -> bytes:
        return encode_response(response.version, response.type_url, response.nonce, *bodies)

    def clear(self) -> None:
        self._bodies.clear()
