"""A route configuration reuses the virtual hosts it built before, by IR value.

An edit of one virtual host of a thousand must build that one only, and the
result must be the same bytes as building everything afresh.
"""

from __future__ import annotations

from pilotfish import ir
from pilotfish.xds.build import routes


def _vhost(name: str, cluster: str) -> ir.VirtualHost:
    route = ir.Route(
        name="default",
        match=ir.RouteMatch(),
        action=ir.ForwardAction(clusters=(ir.WeightedCluster(cluster, 100),)),
    )
    return ir.VirtualHost(name=name, domains=(name,), routes=(route,))


def test_an_edit_builds_only_the_virtual_host_that_changed() -> None:
    hosts = [_vhost(f"svc-{i}.default:80", f"outbound|80||svc-{i}") for i in range(50)]
    routes.build_route_config(ir.RouteConfig("80", tuple(hosts)))
    before = routes._cached_virtual_host.cache_info()

    hosts[7] = _vhost(hosts[7].name, "outbound|80|v2|svc-7")
    edited = ir.RouteConfig("80", tuple(hosts))
    built = routes.build_route_config(edited)
    after = routes._cached_virtual_host.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 49)

    fresh = [routes.build_virtual_host(vh) for vh in edited.virtual_hosts]
    assert list(built.virtual_hosts) == fresh
    assert built.virtual_hosts[7].routes[0].route.cluster == "outbound|80|v2|svc-7"
