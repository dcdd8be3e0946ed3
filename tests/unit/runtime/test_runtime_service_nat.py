"""The cluster-IP rules of a pod out of the mesh (``runtime.network.service_nat``)."""

from __future__ import annotations

from pilotfish.registry.build import Registry
from pilotfish.registry.model import Instance, MeshService, ServicePort
from pilotfish.runtime.network.service_nat import (
    ServiceRoute,
    restore_input,
    service_nat_rules,
    service_routes,
)

HOST = "reviews.default.svc.cluster.local"


def _registry() -> Registry:
    reviews = MeshService(
        HOST, "default", (ServicePort("http", 9080, "HTTP"),), addresses=("10.96.0.7",)
    )
    external = MeshService(
        "api.example.com",
        "default",
        (ServicePort("https", 443, "HTTPS"),),
        addresses=("10.96.0.9",),
        resolution="DNS",
    )
    empty = MeshService(
        "ratings.default.svc.cluster.local",
        "default",
        (ServicePort("http", 9080, "HTTP"),),
        addresses=("10.96.0.3",),
    )
    instances = {
        (HOST, 9080): (
            Instance(HOST, 9080, "198.18.0.5", 9080),
            Instance(HOST, 9080, "198.18.0.4", 9080),
            Instance(HOST, 9080, "198.18.0.6", 9081),
        ),
        ("api.example.com", 443): (Instance("api.example.com", 443, "api.example.com", 443),),
    }
    return Registry(
        services={s.hostname: s for s in (reviews, external, empty)}, instances=instances
    )


def test_routes_cover_cluster_ips_of_eds_services_only() -> None:
    routes = service_routes(_registry())
    assert routes == (
        ServiceRoute("10.96.0.3", 9080, ()),
        ServiceRoute(
            "10.96.0.7", 9080, (("198.18.0.4", 9080), ("198.18.0.5", 9080), ("198.18.0.6", 9081))
        ),
    )


def test_each_endpoint_gets_an_equal_share_and_the_last_always_matches() -> None:
    rules = service_nat_rules(service_routes(_registry()))
    dnat = [r for r in rules if "DNAT" in r]
    assert [r[r.index("--to-destination") + 1] for r in dnat] == [
        "198.18.0.4:9080",
        "198.18.0.5:9080",
        "198.18.0.6:9081",
    ]
    probabilities = [
        float(r[r.index("--probability") + 1]) if "--probability" in r else 1.0 for r in dnat
    ]
    # 1/3 for the first; of the 2/3 left, 1/2; the rest: each endpoint gets 1/3.
    assert all(abs(a - b) < 1e-9 for a, b in zip(probabilities, [1 / 3, 0.5, 1.0], strict=True))
    assert all(r[5:7] == ["-d", "10.96.0.7/32"] for r in dnat)


def test_restore_input_replaces_nat_and_rejects_cluster_ips_without_endpoints() -> None:
    text = restore_input(service_routes(_registry()))
    nat, _, filt = text.partition("COMMIT\n")
    assert nat.startswith("*nat\n:PF_SERVICES - [0:0]\n-A OUTPUT -p tcp -j PF_SERVICES\n")
    assert filt == (
        "*filter\n"
        "-A OUTPUT -d 10.96.0.3/32 -p tcp --dport 9080 -j REJECT --reject-with tcp-reset\n"
        "COMMIT\n"
    )
