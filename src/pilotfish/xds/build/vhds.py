"""Route configurations as delta streams get them: virtual hosts over VHDS.

Theory of operation. Over SotW a route configuration carries its virtual hosts
inline, so a VirtualService edit re-sends the whole ``"9080"`` configuration
(1000 virtual hosts, ~940 KB at 1000 services) to every proxy. Envoy's virtual
host discovery (VHDS, delta xDS only, also over a delta ADS stream) lets a
route configuration name ``vhds`` and receive its virtual hosts as separate
``VirtualHost`` resources named ``<route configuration>/<virtual host>``; an
edit then sends the one virtual host that changed.

``VhdsCache.split`` turns a generator's RDS set into that form: every route
configuration but the inbound ones (one virtual host each, they would only
add a round trip) becomes the same configuration without virtual hosts and
with ``vhds`` (over ADS); its virtual hosts become one ``VirtualHost`` set per
route configuration. Each virtual host's own ``name`` is the resource name
too: Envoy keys the virtual hosts it got by their name and removes them by
resource name, so the two must agree.

Never toggle. A route configuration names ``vhds`` even when it has no
virtual hosts (a gateway's, once its routes are deleted). Envoy re-creates
its VHDS subscription whenever the ``vhds`` of a route configuration appears
or changes (it compares a hash of the field), and the removals sent while a
configuration had no ``vhds`` were ACKed but not applied: after 0 -> 1 virtual
hosts it held the new one and the two removed before (measured with Envoy 1.40,
``tests/integration/test_xds_vhds_churn_envoy.py``). With
``vhds`` fixed, a route configuration's bytes do not change when only its
virtual hosts do, and only VirtualHost resources move.

Envoy's VHDS subscription names no resources (measured with Envoy 1.40: the
first VirtualHost request of a delta ADS stream has an empty
``resource_names_subscribe``); it wants the virtual hosts of the route
configurations it subscribed over RDS. ``VhdsCache.subscribed`` is that set
for a set of RDS names.

Everything is shared between streams and cached by object identity: one route
configuration's bytes are parsed and split once, however many proxies share
them; one split per RDS set; one composed VirtualHost set per combination of
parts, so streams with the same subscription get the very same set object,
and the delta encoder writes its frame once. The caches are bounded LRUs that
keep their keys alive, so an id is never reused while cached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import any_pb2

from pilotfish.xds.build._common import ads_config_source
from pilotfish.xds.build.resources import pack
from pilotfish.xds.types import ROUTE_TYPE, VHDS_TYPE, ResourceSet

__all__ = ["INLINE_PREFIXES", "VhdsCache", "VhdsSplit", "joined", "vhds_cache"]

#: Route configurations kept with inline virtual hosts (inbound: one each).
INLINE_PREFIXES = ("inbound|",)

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Lru(Generic[_K, _V]):
    """A bounded map, least recently used entry evicted first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: _K, value: _V) -> None:
        self._items[key] = value
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass(frozen=True, slots=True)
class VhdsSplit:
    """An RDS set in VHDS form."""

    routes: ResourceSet
    # Route configuration name -> its virtual hosts (VHDS_TYPE).
    vhosts: Mapping[str, ResourceSet]


class VhdsCache:
    """Splits RDS sets and composes subscribed VirtualHost sets (see the module doc)."""

    def __init__(self, size: int = 1024) -> None:
        # id(bytes) -> (bytes, (route configuration bytes, its virtual hosts))
        self._configs: _Lru[int, tuple[bytes, tuple[bytes, ResourceSet]]] = _Lru(size)
        self._splits: _Lru[int, tuple[ResourceSet, VhdsSplit]] = _Lru(size)
        self._subscribed: _Lru[tuple[int, ...], tuple[tuple[ResourceSet, ...], ResourceSet]] = _Lru(
            size
        )
        self.configs_split = 0  # route configurations parsed and split (tests, metrics)

    def split(self, routes: ResourceSet) -> VhdsSplit:
        """``routes`` (RDS, as the generator made it) in VHDS form."""
        found = self._splits.get(id(routes))
        if found is not None and found[0] is routes:
            return found[1]
        out: dict[str, bytes] = {}
        vhosts: dict[str, ResourceSet] = {}
        for name, data in routes.resources.items():
            if name.startswith(INLINE_PREFIXES):
                out[name] = data
            else:
                out[name], vhosts[name] = self._split_config(data)
        result = VhdsSplit(ResourceSet(ROUTE_TYPE, out), vhosts)
        self._splits.put(id(routes), (routes, result))
        return result

    def _split_config(self, data: bytes) -> tuple[bytes, ResourceSet]:
        found = self._configs.get(id(data))
        if found is not None and found[0] is data:
            return found[1]
        config = route_pb2.RouteConfiguration()
        any_pb2.Any.FromString(data).Unpack(config)
        self.configs_split += 1
        hosts: dict[str, bytes] = {}
        for vhost in config.virtual_hosts:
            named = route_components_pb2.VirtualHost()
            named.CopyFrom(vhost)
            named.name = f"{config.name}/{vhost.name}"
            hosts[named.name] = pack(named)
        del config.virtual_hosts[:]
        # Even with no virtual hosts: see "Never toggle" in the module doc.
        config.vhds.config_source.CopyFrom(ads_config_source())
        result = (pack(config), ResourceSet(VHDS_TYPE, hosts))
        self._configs.put(id(data), (data, result))
        return result

    def subscribed(self, split: VhdsSplit, names: Iterable[str]) -> ResourceSet:
        """The virtual hosts of the route configurations ``names`` (RDS subscription);
        the same object for the same parts."""
        parts = tuple(split.vhosts[n] for n in sorted(set(names)) if n in split.vhosts)
        if len(parts) == 1:
            return parts[0]
        key = tuple(id(p) for p in parts)
        found = self._subscribed.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], parts, strict=True)):
            return found[1]
        composed = ResourceSet.compose(VHDS_TYPE, parts) if parts else ResourceSet(VHDS_TYPE, {})
        self._subscribed.put(key, (parts, composed))
        return composed


def joined(routes: ResourceSet, vhosts: ResourceSet) -> ResourceSet:
    """``routes`` with the ``vhosts`` of each VHDS route configuration put back in,
    as Envoy's config dump shows them (for inspection; parses everything)."""
    by_config: dict[str, list[bytes]] = {}
    for name in sorted(vhosts.resources):
        by_config.setdefault(name.rsplit("/", 1)[0], []).append(vhosts.resources[name])
    out: dict[str, bytes] = {}
    for name, data in routes.resources.items():
        config = route_pb2.RouteConfiguration()
        any_pb2.Any.FromString(data).Unpack(config)
        if not config.HasField("vhds"):
            out[name] = data
            continue
        for vhost in by_config.get(name, ()):
            any_pb2.Any.FromString(vhost).Unpack(config.virtual_hosts.add())
        out[name] = pack(config)
    return ResourceSet(ROUTE_TYPE, out)


#: The one cache of a process: every delta stream of a server shares it.
vhds_cache = VhdsCache()
