"""Route configuration builder: the fields Envoy routing depends on."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2

from pilotfish import ir
from pilotfish.xds.build import build_route_config
from pilotfish.xds.build.routes import build_route, build_route_match

OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


def _forward(*clusters: ir.WeightedCluster, **kwargs: object) -> ir.ForwardAction:
    return ir.ForwardAction(clusters=clusters, **kwargs)  # type: ignore[arg-type]


def _route(action: ir.RouteAction, match: ir.RouteMatch | None = None) -> rc_pb2.Route:
    return build_route(ir.Route("r", match or ir.RouteMatch(), action))


def test_route_config_keeps_virtual_host_and_domain_order() -> None:
    config = ir.RouteConfig(
        "9080",
        (
            ir.VirtualHost("b", ("b.svc", "b"), ()),
            ir.VirtualHost("a", ("z", "a"), ()),
        ),
    )
    proto = build_route_config(config)
    assert proto.name == "9080"
    assert [vh.name for vh in proto.virtual_hosts] == ["b", "a"]
    assert list(proto.virtual_hosts[1].domains) == ["z", "a"]
    assert proto.HasField("validate_clusters") and not proto.validate_clusters.value


@pytest.mark.parametrize(
    ("match", "field", "value"),
    [
        (ir.StringMatch("prefix", "/api"), "prefix", "/api"),
        (ir.StringMatch("exact", "/api/v1"), "path", "/api/v1"),
    ],
)
def test_path_match_kinds(match: ir.StringMatch, field: str, value: str) -> None:
    proto = build_route_match(ir.RouteMatch(path=match))
    assert proto.WhichOneof("path_specifier") == field
    assert getattr(proto, field) == value
    assert not proto.HasField("case_sensitive")


def test_regex_path_uses_re2_and_inline_case_folding() -> None:
    proto = build_route_match(ir.RouteMatch(path=ir.StringMatch("regex", "/a.*", ignore_case=True)))
    assert proto.WhichOneof("path_specifier") == "safe_regex"
    assert proto.safe_regex.regex == "(?i)/a.*"
    assert not proto.HasField("case_sensitive")


def test_ignore_case_prefix_sets_case_sensitive_false() -> None:
    proto = build_route_match(ir.RouteMatch(path=ir.StringMatch("prefix", "/A", ignore_case=True)))
    assert proto.HasField("case_sensitive") and proto.case_sensitive.value is False


def test_header_and_query_matchers() -> None:
    proto = build_route_match(
        ir.RouteMatch(
            headers=(
                ir.HeaderMatch("end-user", ir.StringMatch("exact", "Jason", ignore_case=True)),
                ir.HeaderMatch("x-present"),
                ir.HeaderMatch("x-any", ir.StringMatch("prefix", "")),
                ir.HeaderMatch("x-bad", ir.StringMatch("regex", "^b.*"), invert=True),
                ir.HeaderMatch(":method", ir.StringMatch("exact", "GET")),
            ),
            query_params=(
                ir.QueryParamMatch("debug"),
                ir.QueryParamMatch("lang", ir.StringMatch("prefix", "en")),
            ),
        )
    )
    user, present, any_value, bad, method = proto.headers
    assert user.name == "end-user"
    assert user.string_match.exact == "Jason" and user.string_match.ignore_case
    assert present.present_match and not present.HasField("string_match")
    assert any_value.present_match
    assert bad.invert_match and bad.string_match.safe_regex.regex == "^b.*"
    assert method.name == ":method" and method.string_match.exact == "GET"
    debug, lang = proto.query_parameters
    assert debug.name == "debug" and debug.present_match
    assert lang.string_match.prefix == "en"


def test_single_cluster_without_header_ops_uses_cluster() -> None:
    proto = _route(_forward(ir.WeightedCluster("c1", 100)))
    assert proto.route.cluster == "c1"
    assert not proto.route.HasField("weighted_clusters")
    assert not proto.route.HasField("timeout")
    assert not proto.route.HasField("retry_policy")


def test_weighted_clusters_with_per_cluster_header_ops() -> None:
    proto = _route(
        _forward(
            ir.WeightedCluster("v1", 75, request_headers=ir.HeaderOps(set=(("x-v", "1"),))),
            ir.WeightedCluster(
                "v2", 25, response_headers=ir.HeaderOps(add=(("x-r", "2"),), remove=("x-d",))
            ),
        )
    )
    weighted = proto.route.weighted_clusters
    assert [(c.name, c.weight.value) for c in weighted.clusters] == [("v1", 75), ("v2", 25)]
    assert sum(c.weight.value for c in weighted.clusters) == 100
    v1, v2 = weighted.clusters
    assert v1.request_headers_to_add[0].header.key == "x-v"
    assert v1.request_headers_to_add[0].append_action == OVERWRITE
    assert v2.response_headers_to_add[0].append_action == APPEND
    assert list(v2.response_headers_to_remove) == ["x-d"]


def test_one_cluster_with_header_ops_stays_weighted() -> None:
    proto = _route(
        _forward(ir.WeightedCluster("v1", 1, request_headers=ir.HeaderOps(remove=("a",))))
    )
    assert proto.route.WhichOneof("cluster_specifier") == "weighted_clusters"


def test_zero_timeout_is_present_and_disables() -> None:
    proto = _route(_forward(ir.WeightedCluster("c", 1), timeout_ms=0))
    assert proto.route.HasField("timeout")
    assert proto.route.timeout.seconds == 0 and proto.route.timeout.nanos == 0


def test_timeout_in_milliseconds() -> None:
    proto = _route(_forward(ir.WeightedCluster("c", 1), timeout_ms=2500))
    assert (proto.route.timeout.seconds, proto.route.timeout.nanos) == (2, 500_000_000)


def test_retry_policy_avoids_previous_hosts() -> None:
    retry = ir.RetryPolicy(
        attempts=3, retry_on="5xx,reset", per_try_timeout_ms=250, retriable_status_codes=(503, 504)
    )
    policy = _route(_forward(ir.WeightedCluster("c", 1), retry=retry)).route.retry_policy
    assert policy.retry_on == "5xx,reset"
    assert policy.num_retries.value == 3
    assert policy.per_try_timeout.ToMilliseconds() == 250
    assert list(policy.retriable_status_codes) == [503, 504]
    assert policy.host_selection_retry_max_attempts == 5
    (predicate,) = policy.retry_host_predicate
    assert predicate.name == "envoy.retry_host_predicates.previous_hosts"
    assert predicate.typed_config.Is(previous_hosts_pb2.PreviousHostsPredicate.DESCRIPTOR)


def test_zero_retries_are_explicit() -> None:
    policy = _route(
        _forward(ir.WeightedCluster("c", 1), retry=ir.RetryPolicy(attempts=0, retry_on="5xx"))
    ).route.retry_policy
    assert policy.HasField("num_retries") and policy.num_retries.value == 0


def test_rewrites() -> None:
    prefix = _route(_forward(ir.WeightedCluster("c", 1), prefix_rewrite="/v2/", host_rewrite="h"))
    assert prefix.route.prefix_rewrite == "/v2/"
    assert prefix.route.host_rewrite_literal == "h"
    whole = _route(_forward(ir.WeightedCluster("c", 1), path_rewrite="/new\\path"))
    assert whole.route.regex_rewrite.pattern.regex == "^/.*$"
    # A literal backslash must not read as a capture group reference.
    assert whole.route.regex_rewrite.substitution == "/new\\\\path"
    assert not whole.route.prefix_rewrite


def test_both_rewrites_are_rejected() -> None:
    with pytest.raises(ValueError, match="both"):
        _route(_forward(ir.WeightedCluster("c", 1), prefix_rewrite="/a", path_rewrite="/b"))


def test_hash_policies() -> None:
    policies = (
        ir.HashPolicy(header="x-user"),
        ir.HashPolicy(cookie_name="s", cookie_ttl_ms=10_000, cookie_path="/"),
        ir.HashPolicy(source_ip=True),
        ir.HashPolicy(query_param="u"),
    )
    header, cookie, source, query = _route(
        _forward(ir.WeightedCluster("c", 1), hash_policies=policies)
    ).route.hash_policy
    assert header.header.header_name == "x-user"
    assert cookie.cookie.name == "s"
    assert cookie.cookie.ttl.seconds == 10 and cookie.cookie.path == "/"
    assert source.connection_properties.source_ip
    assert query.query_parameter.name == "u"
    with pytest.raises(ValueError, match="hash policy"):
        _route(_forward(ir.WeightedCluster("c", 1), hash_policies=(ir.HashPolicy(),)))


@pytest.mark.parametrize(
    ("code", "enum_value"),
    [
        (301, rc_pb2.RedirectAction.MOVED_PERMANENTLY),
        (302, rc_pb2.RedirectAction.FOUND),
        (303, rc_pb2.RedirectAction.SEE_OTHER),
        (307, rc_pb2.RedirectAction.TEMPORARY_REDIRECT),
        (308, rc_pb2.RedirectAction.PERMANENT_REDIRECT),
    ],
)
def test_redirect_codes(code: int, enum_value: int) -> None:
    proto = _route(ir.RedirectAction(path="/x", response_code=code))
    assert proto.redirect.response_code == enum_value
    assert proto.redirect.path_redirect == "/x"


def test_redirect_fields() -> None:
    https = _route(ir.RedirectAction(prefix="/new", host="h.example", port=8443, scheme="https"))
    assert https.redirect.https_redirect and not https.redirect.scheme_redirect
    assert https.redirect.prefix_rewrite == "/new"
    assert https.redirect.host_redirect == "h.example"
    assert https.redirect.port_redirect == 8443
    http = _route(ir.RedirectAction(scheme="http"))
    assert http.redirect.scheme_redirect == "http" and not http.redirect.https_redirect
    with pytest.raises(ValueError, match="redirect code 300"):
        _route(ir.RedirectAction(response_code=300))


def test_direct_response() -> None:
    proto = _route(ir.DirectResponseAction(status=418, body="teapot"))
    assert proto.direct_response.status == 418
    assert proto.direct_response.body.inline_string == "teapot"
    empty = _route(ir.DirectResponseAction(status=204))
    assert not empty.direct_response.HasField("body")


def test_route_level_header_ops_and_name() -> None:
    proto = build_route(
        ir.Route(
            "named",
            ir.RouteMatch(),
            ir.DirectResponseAction(status=200),
            request_headers=ir.HeaderOps(set=(("a", "1"),), add=(("b", "2"),), remove=("c",)),
            response_headers=ir.HeaderOps(add=(("d", "3"),), remove=("e", "f")),
        )
    )
    assert proto.name == "named"
    assert [
        (h.header.key, h.header.value, h.append_action) for h in proto.request_headers_to_add
    ] == [
        ("a", "1", OVERWRITE),
        ("b", "2", APPEND),
    ]
    assert list(proto.request_headers_to_remove) == ["c"]
    assert [h.header.key for h in proto.response_headers_to_add] == ["d"]
    assert list(proto.response_headers_to_remove) == ["e", "f"]
