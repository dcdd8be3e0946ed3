"""The contract between configuration generation and the xDS protocol server.

The server knows nothing about translation: for a connected proxy it asks a
``ConfigGenerator`` for one ``ResourceSet`` per xDS type and compares them with
what that proxy last received. Resource bytes are serialized once and shared
by every proxy that gets them, so a push to many proxies is mostly copying.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ADS_ORDER",
    "ADS_PUSH_ORDER",
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "SECRET_TYPE",
    "TYPE_SHORT_NAMES",
    "VHDS_TYPE",
    "ConfigGenerator",
    "ResourceSet",
    "resource_version",
]

_PREFIX = "type.googleapis.com/envoy."
CLUSTER_TYPE = _PREFIX + "config.cluster.v3.Cluster"
ENDPOINT_TYPE = _PREFIX + "config.endpoint.v3.ClusterLoadAssignment"
LISTENER_TYPE = _PREFIX + "config.listener.v3.Listener"
ROUTE_TYPE = _PREFIX + "config.route.v3.RouteConfiguration"
SECRET_TYPE = _PREFIX + "extensions.transport_sockets.tls.v3.Secret"
# Virtual hosts of route configurations served over VHDS (delta streams only,
# ``xds.build.vhds``); never in a generator's sets.
VHDS_TYPE = _PREFIX + "config.route.v3.VirtualHost"

# Push order that keeps Envoy from ever referencing a resource it lacks
# (clusters before their endpoints, listeners before their routes).
ADS_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
# What the ADS server serves: the configuration types, then SDS secrets
# (``credentialName`` certificates), as Istio orders them. A secret is only
# requested once a listener or cluster naming it arrived.
ADS_PUSH_ORDER = (*ADS_ORDER, SECRET_TYPE)

TYPE_SHORT_NAMES = {
    CLUSTER_TYPE: "CDS",
    ENDPOINT_TYPE: "EDS",
    LISTENER_TYPE: "LDS",
    ROUTE_TYPE: "RDS",
    SECRET_TYPE: "SDS",
    VHDS_TYPE: "VHDS",
}


@dataclass(frozen=True, slots=True)
class ResourceSet:
    """All resources of one type for one proxy.

    ``resources`` maps resource name to the serialized ``google.protobuf.Any``
    of that resource. The mapping and its bytes objects are shared between
    proxies with equal inputs; never mutate them. ``version`` is a digest of the
    contents, so equal sets have equal versions whoever computed them.
    """

    type_url: str
    resources: Mapping[str, bytes]
    version: str = field(default="")
    # When built by ``compose``: the shared sets this one is made of. Encoders
    # may encode each part once and concatenate, instead of per composed set.
    parts: tuple[ResourceSet, ...] = ()
    # Per-resource versions (delta xDS), computed on first use: once per set
    # object, so every stream that gets this set shares them.
    _versions: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)
    _size: int = field(default=-1, init=False, repr=False, compare=False)
    # The last ``present()`` question and answer: the streams of one view subscribe
    # the very same (shared) name set, so one entry answers all of them.
    _present: tuple[frozenset[str], frozenset[str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @classmethod
    def compose(cls, type_url: str, parts: Sequence[ResourceSet]) -> ResourceSet:
        """A set made of ``parts`` (names must not repeat across parts).

        Nothing is copied: lookups go through the parts, and the version is a
        digest of the parts' versions, so composing is cheap however large the
        parts are.
        """
        kept = tuple(p for p in parts if p.resources)
        if len(kept) == 1:
            return kept[0]
        digest = hashlib.sha256()
        for part in kept:
            digest.update(part.version.encode())
            digest.update(b"\0")
        return cls(type_url, _Merged(kept), digest.hexdigest()[:16] or "empty", kept)

    def __post_init__(self) -> None:
        if not self.version:
            digest = hashlib.sha256()
            for name in sorted(self.resources):
                digest.update(name.encode())
                digest.update(b"\0")
                digest.update(self.resources[name])
            object.__setattr__(self, "version", digest.hexdigest()[:16])

    def versions(self) -> Mapping[str, str]:
        """Name -> version of each resource: a digest of its serialized bytes, so
        equal resources have equal versions in every process and across restarts."""
        if self.parts:
            return _MergedVersions(self.parts)
        versions = self._versions
        if versions is None:
            versions = {name: resource_version(data) for name, data in self.resources.items()}
            object.__setattr__(self, "_versions", versions)
        return versions

    def present(self, names: frozenset[str]) -> frozenset[str]:
        """The ``names`` this set holds (the last answer is kept, for the next stream)."""
        memo = self._present
        if memo is not None and memo[0] is names:
            return memo[1]
        found: set[str] = set()
        for part in self.parts or (self,):
            resources = part.resources
            if isinstance(resources, dict):
                found |= names & resources.keys()  # set intersection, in C
            else:
                found.update(n for n in names if n in resources)
        answer = frozenset(found)
        object.__setattr__(self, "_present", (names, answer))
        return answer

    def byte_size(self) -> int:
        """Total bytes of the serialized resources (computed once per set object)."""
        size = self._size
        if size < 0:
            if self.parts:
                size = sum(p.byte_size() for p in self.parts)
            else:
                size = sum(len(data) for data in self.resources.values())
            object.__setattr__(self, "_size", size)
        return size

    def version_of(self, name: str) -> str:
        """The version of one resource (KeyError if absent)."""
        for part in self.parts:
            if name in part.resources:
                return part.versions()[name]
        return self.versions()[name]


def resource_version(data: bytes) -> str:
    """The delta xDS version of a resource: a short digest of its serialized ``Any``."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


class ConfigGenerator(Protocol):
    """Computes what a proxy should have. Implemented by the control plane."""

    def view_of(self, node_id: str, metadata: Mapping[str, Any]) -> object:
        """Validate a connecting node; return an opaque hashable view or raise ValueError."""
        ...

    def generate(self, view: object) -> Mapping[str, ResourceSet]:
        """Current resources per type URL (all of ``ADS_ORDER``, and
        ``SECRET_TYPE`` when the view's configuration names credentials) for a view.

        Must be cheap when called again for the same view and config revision
        (the result is cached and shared).
        """
        ...


class _Merged(Mapping[str, bytes]):
    """Read-only union of the parts' resources, without copying them."""

    __slots__ = ("_parts",)

    def __init__(self, parts: tuple[ResourceSet, ...]) -> None:
        self._parts = parts

    def __getitem__(self, name: str) -> bytes:
        for part in self._parts:
            found = part.resources.get(name)
            if found is not None:
                return found
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(name in part.resources for part in self._parts)

    def __iter__(self) -> Iterator[str]:
        for part in self._parts:
            yield from part.resources

    def __len__(self) -> int:
        return sum(len(part.resources) for part in self._parts)


class _MergedVersions(Mapping[str, str]):
    """Read-only union of the parts' per-resource versions."""

    __slots__ = ("_parts",)

    def __init__(self, parts: tuple[ResourceSet, ...]) -> None:
        self._parts = parts

    def __getitem__(self, name: str) -> str:
        for part in self._parts:
            if name in part.resources:
                return part.versions()[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        for part in self._parts:
            yield from part.resources

    def __len__(self) -> int:
        return sum(len(part.resources) for part in self._parts)
