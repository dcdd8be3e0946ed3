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
"""

from __future__ import annotations

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
    """``ResponseEncoder`` (same per-set body cache) writing delta responses."""

    def _encode_names(self, resource_set: ResourceSet, names: Iterable[str]) -> bytes:
        return encode_resource_entries(resource_set, names)

    def _frame(self, response: Response, bodies: list[bytes]) -> bytes:
        return encode_delta_response(
            response.version, response.type_url, response.nonce, response.removed, *bodies
        )
