"""A realistic sidecar + gateway configuration in IR, shared by the builder tests."""

from __future__ import annotations

from pilotfish import ir
from pilotfish.xds.build import blackhole_cluster, passthrough_cluster

REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
REVIEWS_V1 = f"outbound|9080|v1|{REVIEWS}"
REVIEWS_V2 = f"outbound|9080|v2|{REVIEWS}"
RATINGS_ALL = f"outbound|9080||{RATINGS}"
INBOUND_9080 = "inbound|9080||"


def _reviews_routes() -> ir.RouteConfig:
    weighted = ir.ForwardAction(
        clusters=(
            ir.WeightedCluster(
                REVIEWS_V1, 90, request_headers=ir.HeaderOps(set=(("x-subset", "v1"),))
            ),
            ir.WeightedCluster(REVIEWS_V2, 10, response_headers=ir.HeaderOps(remove=("x-debug",))),
        ),
        timeout_ms=0,
        retry=ir.RetryPolicy(
            attempts=2,
            retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            per_try_timeout_ms=1500,
            retriable_status_codes=(503,),
        ),
    )
    jason = ir.RouteMatch(
        path=ir.StringMatch("prefix", "/reviews"),
        headers=(
            ir.HeaderMatch("end-user", ir.StringMatch("exact", "jason")),
            ir.HeaderMatch("x-canary"),
            ir.HeaderMatch("x-block", ir.StringMatch("regex", "^bad.*"), invert=True),
        ),
        query_params=(
            ir.QueryParamMatch("debug"),
            ir.QueryParamMatch("lang", ir.StringMatch("prefix", "en")),
        ),
    )
    return ir.RouteConfig(
        name="9080",
        virtual_hosts=(
            ir.VirtualHost(
                name=f"{REVIEWS}:9080",
                domains=(REVIEWS, f"{REVIEWS}:9080", "reviews", "reviews:9080"),
                routes=(
                    ir.Route(
                        "jason",
                        jason,
                        ir.ForwardAction(
                            clusters=(ir.WeightedCluster(REVIEWS_V2, 100),),
                            prefix_rewrite="/v2/reviews",
                            host_rewrite="reviews-v2.internal",
                            hash_policies=(
                                ir.HashPolicy(header="x-user"),
                                ir.HashPolicy(cookie_name="session", cookie_ttl_ms=60_000),
                                ir.HashPolicy(source_ip=True),
                                ir.HashPolicy(query_param="user"),
                            ),
                        ),
                        request_headers=ir.HeaderOps(add=(("x-route", "jason"),)),
                    ),
                    ir.Route(
                        "old",
                        ir.RouteMatch(path=ir.StringMatch("exact", "/OLD", ignore_case=True)),
                        ir.RedirectAction(path="/new", scheme="https", response_code=308),
                    ),
                    ir.Route(
                        "health",
                        ir.RouteMatch(path=ir.StringMatch("regex", "/health[0-9]*")),
                        ir.DirectResponseAction(status=200, body="ok\n"),
                    ),
                    ir.Route(
                        "exact-rewrite",
                        ir.RouteMatch(path=ir.StringMatch("exact", "/legacy")),
                        ir.ForwardAction(
                            clusters=(ir.WeightedCluster(REVIEWS_V1, 1),), path_rewrite="/modern"
                        ),
                    ),
                    ir.Route("default", ir.RouteMatch(), weighted),
                ),
            ),
            ir.VirtualHost(
                name="allow_any",
                domains=("*",),
                routes=(
                    ir.Route(
                        "allow_any",
                        ir.RouteMatch(),
                        ir.ForwardAction(clusters=(ir.WeightedCluster("PassthroughCluster", 1),)),
                    ),
                ),
            ),
        ),
    )


def _inbound_routes() -> ir.RouteConfig:
    return ir.RouteConfig(
        name="inbound|9080||",
        virtual_hosts=(
            ir.VirtualHost(
                name="inbound|http|9080",
                domains=("*",),
                routes=(
                    ir.Route(
                        "default",
                        ir.RouteMatch(),
                        ir.ForwardAction(
                            clusters=(ir.WeightedCluster(INBOUND_9080, 1),), timeout_ms=0
                        ),
                    ),
                ),
            ),
        ),
    )


def make_sample_config() -> ir.ProxyConfig:
    """Outbound capture, one HTTP and one TCP service port, inbound capture and a gateway."""
    passthrough_chain = ir.FilterChain(
        name="PassthroughFilterChain",
        filter=ir.TcpProxy("PassthroughCluster", "PassthroughCluster"),
    )
    listeners = (
        ir.Listener(
            name="virtualOutbound",
            address="0.0.0.0",
            port=15001,
            default_chain=passthrough_chain,
            use_original_dst=True,
        ),
        ir.Listener(
            name="0.0.0.0_9080",
            address="0.0.0.0",
            port=9080,
            bind_to_port=False,
            inspect_http=True,
            filter_chains=(
                ir.FilterChain(
                    name="0.0.0.0_9080",
                    filter=ir.HttpConnectionManager(
                        "outbound_0.0.0.0_9080", route_config_name="9080"
                    ),
                    match=ir.FilterChainMatch(application_protocols=("http/1.1", "h2c")),
                ),
            ),
            default_chain=passthrough_chain,
        ),
        ir.Listener(
            name="10.96.0.20_3306",
            address="10.96.0.20",
            port=3306,
            bind_to_port=False,
            filter_chains=(
                ir.FilterChain(
                    name="mysql",
                    filter=ir.TcpProxy(
                        "outbound|3306||mysql", "outbound|3306||mysql.default.svc.cluster.local"
                    ),
                    match=ir.FilterChainMatch(prefix_ranges=("10.96.0.20/32", "fd00::/64")),
                ),
            ),
        ),
        ir.Listener(
            name="virtualInbound",
            address="0.0.0.0",
            port=15006,
            direction="inbound",
            use_original_dst=True,
            inspect_tls=True,
            inspect_http=True,
            filter_chains=(
                ir.FilterChain(
                    name="0.0.0.0_9080",
                    filter=ir.HttpConnectionManager(
                        "inbound_0.0.0.0_9080",
                        inline_routes=_inbound_routes(),
                        direction="inbound",
                        access_logs=(ir.AccessLog(),),
                    ),
                    match=ir.FilterChainMatch(
                        destination_port=9080, transport_protocol="raw_buffer"
                    ),
                ),
            ),
            default_chain=ir.FilterChain(
                name="InboundPassthroughFilterChain",
                filter=ir.TcpProxy("InboundPassthroughCluster", "PassthroughCluster"),
            ),
        ),
        ir.Listener(
            name="0.0.0.0_8080",
            address="0.0.0.0",
            port=8080,
            direction="gateway",
            filter_chains=(
                ir.FilterChain(
                    name="http.8080",
                    filter=ir.HttpConnectionManager(
                        "outbound_0.0.0.0_8080",
                        route_config_name="9080",
                        access_logs=(ir.AccessLog(),),
                    ),
                    match=ir.FilterChainMatch(server_names=("bookinfo.example.com",)),
                ),
            ),
        ),
    )
    clusters = (
        ir.Cluster(
            name=RATINGS_ALL,
            discovery="EDS",
            http2=True,
            consistent_hash=ir.ConsistentHashLb("RING_HASH", minimum_ring_size=1024),
            service=RATINGS,
            port=9080,
        ),
        ir.Cluster(name=REVIEWS_V1, discovery="EDS", lb_policy="LEAST_REQUEST", subset="v1"),
        ir.Cluster(name=REVIEWS_V2, discovery="EDS", consistent_hash=ir.ConsistentHashLb("MAGLEV")),
        ir.Cluster(
            name="outbound|3306||mysql.default.svc.cluster.local",
            discovery="STRICT_DNS",
            connect_timeout_ms=2500,
            endpoints=(ir.Endpoint("localhost", 3306),),
        ),
        ir.Cluster(
            name=INBOUND_9080,
            discovery="STATIC",
            endpoints=(ir.Endpoint("127.0.0.1", 9080),),
            direction="inbound",
        ),
        passthrough_cluster(),
        blackhole_cluster(),
    )
    load_assignments = (
        ir.ClusterLoadAssignment(
            RATINGS_ALL,
            (
                ir.Endpoint("10.1.0.5", 9080, weight=2, locality="us-east1/us-east1-b/rack1"),
                ir.Endpoint("10.1.0.6", 9080, locality="us-east1/us-east1-c"),
                ir.Endpoint("10.1.0.7", 9080, locality="us-east1/us-east1-b/rack1"),
            ),
        ),
        ir.ClusterLoadAssignment(REVIEWS_V1, (ir.Endpoint("10.1.1.5", 9080),)),
        ir.ClusterLoadAssignment(REVIEWS_V2, ()),
    )
    return ir.ProxyConfig(
        listeners=listeners,
        route_configs=(_reviews_routes(),),
        clusters=clusters,
        load_assignments=load_assignments,
    )
