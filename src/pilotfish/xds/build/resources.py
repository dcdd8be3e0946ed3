"""Whole-proxy building, deterministic packing and the per-instance build cache.

Theory of operation: every builder is a pure function of frozen, hashable IR,
so the IR object itself is a perfect cache key. ``ProtoBuilder`` owns two
bounded LRU caches keyed on IR resources: one for protos (for inspection),
one for their serialized ``Any`` bytes (what the xDS cache sends). Proxies
with equal IR resources therefore share one build and one serialization, and
equal IR always yields byte-identical output: every ``Any`` in the tree is
serialized with ``deterministic=True``, which also sorts map entries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from google.protobuf.message import Message

from pilotfish import ir
from pilotfish.xds.build._common import any_of
from pilotfish.xds.build.clusters import build_cluster
from pilotfish.xds.build.endpoints import build_load_assignment
from pilotfish.xds.build.listeners import build_listener
from pilotfish.xds.build.routes import build_route_config
from pilotfish.xds.build.secrets import build_secret
from pilotfish.xds.types import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "ProtoBuilder",
    "Resource",
    "build_all",
    "build_resource",
    "pack",
    "resource_name",
    "type_url_for",
]

Resource = ir.Listener | ir.RouteConfig | ir.Cluster | ir.ClusterLoadAssignment

DEFAULT_CACHE_SIZE = 8192

_TYPE_URLS: Mapping[type, str] = {
    ir.Cluster: CLUSTER_TYPE,
    ir.ClusterLoadAssignment: ENDPOINT_TYPE,
    ir.Listener: LISTENER_TYPE,
    ir.RouteConfig: ROUTE_TYPE,
}


def pack(message: Message) -> bytes:
    """``message`` wrapped in a ``google.protobuf.Any``, serialized deterministically."""
    result: bytes = any_of(message).SerializeToString(deterministic=True)
    return result


def type_url_for(resource: Resource) -> str:
    """The xDS type URL (``pilotfish.xds.types``) of an IR resource."""
    return _TYPE_URLS[type(resource)]


def resource_name(resource: Resource) -> str:
    """The xDS resource name Envoy knows ``resource`` by."""
    if isinstance(resource, ir.ClusterLoadAssignment):
        return resource.cluster_name
    return resource.name


def build_resource(resource: Resource) -> Message:
    """Build any IR resource with the builder for its kind."""
    if isinstance(resource, ir.Listener):
        return build_listener(resource)
    if isinstance(resource, ir.RouteConfig):
        return build_route_config(resource)
    if isinstance(resource, ir.Cluster):
        return build_cluster(resource)
    return build_load_assignment(resource)


def _resources_of(config: ir.ProxyConfig) -> tuple[Resource, ...]:
    return (*config.clusters, *config.load_assignments, *config.listeners, *config.route_configs)


def build_all(config: ir.ProxyConfig) -> dict[str, list[Message]]:
    """Every resource of ``config`` built, by type URL (all of ``ADS_PUSH_ORDER``
    present, in that order), each list in the order of the IR."""
    built: dict[str, list[Message]] = {
        CLUSTER_TYPE: [],
        ENDPOINT_TYPE: [],
        LISTENER_TYPE: [],
        ROUTE_TYPE: [],
    }
    for resource in _resources_of(config):
        built[type_url_for(resource)].append(build_resource(resource))
    built[SECRET_TYPE] = [build_secret(s) for s in config.secrets]
    return built


class ProtoBuilder:
    """Builds and packs IR resources once per distinct value, with bounded LRU caches.

    One instance is meant to live as long as the control plane's xDS cache;
    the caches belong to the instance, so separate instances (tests, separate
    control planes in one process) never share state. Cached protos are shared
    between callers: treat them as read-only.
    """

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        self._build: Callable[[Resource], Message] = functools.lru_cache(maxsize=maxsize)(
            build_resource
        )
        self._packed: Callable[[Resource], bytes] = functools.lru_cache(maxsize=maxsize)(
            _build_and_pack
        )

    def build(self, resource: Resource) -> Message:
        """The (cached, shared, read-only) proto for ``resource``."""
        return self._build(resource)

    def packed(self, resource: Resource) -> bytes:
        """The (cached) serialized ``Any`` of ``resource``; equal IR gives the same object."""
        return self._packed(resource)

    def resources(self, config: ir.ProxyConfig) -> dict[str, dict[str, bytes]]:
        """Serialized resources of ``config`` by type URL then resource name.

        All four ADS types are present, possibly empty. Raises ``ValueError``
        when two different resources of one type share a name.
        """
        out: dict[str, dict[str, bytes]] = {
            CLUSTER_TYPE: {},
            ENDPOINT_TYPE: {},
            LISTENER_TYPE: {},
            ROUTE_TYPE: {},
        }
        for resource in _resources_of(config):
            by_name = out[type_url_for(resource)]
            name = resource_name(resource)
            data = self.packed(resource)
            if by_name.setdefault(name, data) is not data and by_name[name] != data:
                raise ValueError(f"two different {type(resource).__name__}s named {name!r}")
        return out

    def cache_info(self) -> dict[str, functools._CacheInfo]:
        """Hit/miss counters of both caches (for metrics and tests)."""
        return {
            "build": self._build.cache_info(),  # type: ignore[attr-defined]
            "packed": self._packed.cache_info(),  # type: ignore[attr-defined]
        }

    def clear(self) -> None:
        """Drop everything cached."""
        self._build.cache_clear()  # type: ignore[attr-defined]
        self._packed.cache_clear()  # type: ignore[attr-defined]


def _build_and_pack(resource: Resource) -> bytes:
    return pack(build_resource(resource))
