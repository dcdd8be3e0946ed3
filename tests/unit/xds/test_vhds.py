"""VHDS on delta streams: route configurations split into ``vhds`` + VirtualHost
resources (shared between streams), a subscription that follows RDS, and an edit
that sends only the virtual host that changed."""

from __future__ import annotations

from ads_helpers import pack
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import any_pb2

from pilotfish.xds.build.vhds import VhdsCache
from pilotfish.xds.server.delta_stream import DeltaRequest, DeltaStreamState
from pilotfish.xds.server.state import DiffCache
from pilotfish.xds.types import ADS_PUSH_ORDER, ROUTE_TYPE, VHDS_TYPE, ResourceSet


def config(name: str, **vhosts: str) -> bytes:
    """A route configuration with one virtual host per keyword (name=cluster)."""
    rc = route_pb2.RouteConfiguration(name=name)
    for vh_name, cluster_name in vhosts.items():
        vh = rc.virtual_hosts.add(name=vh_name, domains=[f"{vh_name}.test"])
        r = vh.routes.add()
        r.match.prefix = "/"
        r.route.cluster = cluster_name
    return pack(rc)


def routes(**configs: bytes) -> ResourceSet:
    return ResourceSet(ROUTE_TYPE, dict(configs))


def unpack(data: bytes, message: type) -> object:
    out = message()
    any_pb2.Any.FromString(data).Unpack(out)
    return out


SHARED = config("9080", a="ca", b="cb")
INBOUND = config("inbound|9080||", inbound="local")


def test_split_names_vhds_and_names_each_virtual_host_by_its_resource() -> None:
    cache = VhdsCache()
    split = cache.split(routes(**{"9080": SHARED, "inbound|9080||": INBOUND}))
    rc = unpack(split.routes.resources["9080"], route_pb2.RouteConfiguration)
    assert isinstance(rc, route_pb2.RouteConfiguration)
    assert rc.HasField("vhds") and rc.vhds.config_source.HasField("ads")
    assert not rc.virtual_hosts
    # Inbound configurations (one virtual host each) stay inline, byte for byte.
    assert split.routes.resources["inbound|9080||"] is INBOUND
    vhosts = split.vhosts["9080"]
    assert sorted(vhosts.resources) == ["9080/a", "9080/b"]
    vh = unpack(vhosts.resources["9080/a"], route_components_pb2.VirtualHost)
    assert isinstance(vh, route_components_pb2.VirtualHost)
    assert vh.name == "9080/a" and list(vh.domains) == ["a.test"]  # Envoy removes by name
    assert split.vhosts.keys() == {"9080"}


def test_a_route_configuration_is_split_once_for_every_set_sharing_it() -> None:
    cache = VhdsCache()
    one = cache.split(routes(**{"9080": SHARED, "inbound|9080||": INBOUND}))
    other = cache.split(routes(**{"9080": SHARED, "inbound|15006||": INBOUND}))
    assert cache.configs_split == 1
    assert one.vhosts["9080"] is other.vhosts["9080"]
    # The same subscription gives the same set object (one encoding for all streams).
    assert cache.subscribed(one, ["9080", "inbound|9080||"]) is one.vhosts["9080"]
    both = cache.split(routes(**{"9080": SHARED, "8080": config("8080", c="cc")}))
    first = cache.subscribed(both, ["8080", "9080"])
    assert first is cache.subscribed(both, ["9080", "8080"])
    assert sorted(first.resources) == ["8080/c", "9080/a", "9080/b"]


def test_a_configuration_without_virtual_hosts_names_vhds_too() -> None:
    """Its virtual hosts may come back: ``vhds`` must not come and go with them."""
    split = VhdsCache().split(routes(empty=config("empty")))
    rc = unpack(split.routes.resources["empty"], route_pb2.RouteConfiguration)
    assert isinstance(rc, route_pb2.RouteConfiguration)
    assert rc.HasField("vhds") and not rc.virtual_hosts
    assert split.vhosts["empty"].resources == {}
    with_hosts = VhdsCache().split(routes(empty=config("empty", a="ca")))
    assert with_hosts.routes.resources["empty"] == split.routes.resources["empty"]


def subscribed_stream(cache: VhdsCache, sets: dict[str, ResourceSet]) -> DeltaStreamState:
    """A stream that subscribed RDS ``9080`` and then VHDS, everything ACKed."""
    state = DeltaStreamState(ADS_PUSH_ORDER, vhds=cache)
    state.update(sets)
    for request in (DeltaRequest(ROUTE_TYPE, subscribe=("9080",)), DeltaRequest(VHDS_TYPE)):
        for response in state.receive(request, now=0).responses:
            state.receive(DeltaRequest(response.type_url, response_nonce=response.nonce), now=0)
    return state


def test_an_edit_sends_only_the_virtual_host_that_changed() -> None:
    cache = VhdsCache()
    state = subscribed_stream(cache, {ROUTE_TYPE: routes(**{"9080": SHARED})})
    assert VHDS_TYPE in state.types and state.types[VHDS_TYPE].synced
    assert sorted(state.current(VHDS_TYPE).resources) == ["9080/a", "9080/b"]  # type: ignore[union-attr]
    edited = routes(**{"9080": config("9080", a="ca2", b="cb")})
    (response,) = state.update({ROUTE_TYPE: edited}, DiffCache())
    assert response.type_url == VHDS_TYPE and response.names == ("9080/a",)
    assert not response.removed
    # Removing a virtual host: named in removed_resources, nothing else.
    (removal,) = state.update({ROUTE_TYPE: routes(**{"9080": config("9080", a="ca2")})})
    assert removal.type_url == VHDS_TYPE and removal.removed == ("9080/b",)
    assert removal.names == ()


def test_vhds_follows_the_rds_subscription() -> None:
    cache = VhdsCache()
    both = routes(**{"9080": SHARED, "8080": config("8080", c="cc")})
    state = subscribed_stream(cache, {ROUTE_TYPE: both})
    assert sorted(state.current(VHDS_TYPE).resources) == ["9080/a", "9080/b"]  # type: ignore[union-attr]
    more = state.receive(DeltaRequest(ROUTE_TYPE, subscribe=("8080",)), now=0)
    rds, vhds = more.responses
    assert rds.type_url == ROUTE_TYPE and rds.names == ("8080",)
    assert vhds.type_url == VHDS_TYPE and vhds.names == ("8080/c",)
    less = state.receive(DeltaRequest(ROUTE_TYPE, unsubscribe=("9080",)), now=0)
    (gone,) = less.responses
    assert gone.type_url == VHDS_TYPE and gone.removed == ("9080/a", "9080/b")


def test_vhds_is_listed_only_once_subscribed() -> None:
    state = DeltaStreamState(ADS_PUSH_ORDER, vhds=VhdsCache())
    assert VHDS_TYPE not in state.types
    assert list(state.types) == list(ADS_PUSH_ORDER)
    inline = DeltaStreamState(ADS_PUSH_ORDER, vhds=None)
    inline.update({ROUTE_TYPE: routes(**{"9080": SHARED})})
    (response,) = inline.receive(DeltaRequest(ROUTE_TYPE, subscribe=("9080",)), now=0).responses
    assert response.source.resources["9080"] is SHARED


def test_what_the_stream_holds_shows_route_configurations_whole() -> None:
    """``synced_sets`` (``/debug/config_dump``) puts the virtual hosts back in."""
    state = subscribed_stream(VhdsCache(), {ROUTE_TYPE: routes(**{"9080": SHARED})})
    held = state.synced_sets()
    assert VHDS_TYPE not in held
    rc = unpack(held[ROUTE_TYPE].resources["9080"], route_pb2.RouteConfiguration)
    assert isinstance(rc, route_pb2.RouteConfiguration)
    assert [vh.name for vh in rc.virtual_hosts] == ["9080/a", "9080/b"]
    assert [vh.routes[0].route.cluster for vh in rc.virtual_hosts] == ["ca", "cb"]


def test_virtual_hosts_going_to_none_and_back_send_no_route_configuration() -> None:
    """A gateway's route configuration loses all its routes, then gets others: the
    route configuration Envoy holds stays the same (Envoy re-creates its VHDS
    subscription whenever ``vhds`` changes), only virtual hosts move."""
    state = subscribed_stream(VhdsCache(), {ROUTE_TYPE: routes(**{"9080": SHARED})})
    (removal,) = state.update({ROUTE_TYPE: routes(**{"9080": config("9080")})}, DiffCache())
    assert removal.type_url == VHDS_TYPE and removal.removed == ("9080/a", "9080/b")
    state.receive(DeltaRequest(VHDS_TYPE, response_nonce=removal.nonce), now=0)
    back = state.update({ROUTE_TYPE: routes(**{"9080": config("9080", c="cc")})}, DiffCache())
    (added,) = back  # no RDS
    assert added.type_url == VHDS_TYPE and not added.removed
    assert added.names is None and list(added.source.resources) == ["9080/c"]  # the whole set
