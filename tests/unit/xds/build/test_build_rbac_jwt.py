"""RBAC and jwt_authn filter builders: Istio's string rules, policy trees, filter order."""

from __future__ import annotations

import re

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from pilotfish import ir
from pilotfish.ir.security import (
    AuthzMatch,
    AuthzPolicy,
    AuthzRule,
    JwtAuthn,
    JwtHeader,
    JwtProvider,
)
from pilotfish.xds.build import build_http_filters
from pilotfish.xds.build.jwt import build_jwt_authn
from pilotfish.xds.build.rbac import (
    JWT_FILTER_NAME,
    JWT_PAYLOAD_METADATA,
    build_rbac,
    envoy_policy_name,
    istio_string_matcher,
)


def as_dict(message: Message) -> dict[str, object]:
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


def single(rule: AuthzRule, action: str = "ALLOW") -> rbac_pb2.Policy:
    rbac = build_rbac((AuthzPolicy("ns/p", action, (rule,)),), action)  # type: ignore[arg-type]
    (policy,) = rbac.rules.policies.values()
    return policy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", {"exact": "abc"}),
        ("abc*", {"prefix": "abc"}),
        ("*abc", {"suffix": "abc"}),
        ("*", {"safe_regex": {"regex": ".+"}}),
    ],
)
def test_istio_string_forms(value: str, expected: dict[str, object]) -> None:
    assert as_dict(istio_string_matcher(value)) == expected


def test_principal_gets_spiffe_prefix_on_exact_and_prefix_only() -> None:
    exact = istio_string_matcher("cluster.local/ns/a/sa/b", prefix="spiffe://")
    assert exact.exact == "spiffe://cluster.local/ns/a/sa/b"
    prefix = istio_string_matcher("cluster.local/ns/a/*", prefix="spiffe://")
    assert prefix.prefix == "spiffe://cluster.local/ns/a/"
    assert istio_string_matcher("*/sa/admin", prefix="spiffe://").suffix == "/sa/admin"


def _host_regex(value: str) -> str:
    policy = single(AuthzRule(operations=((AuthzMatch("request.host", (value,)),),)))
    header = policy.permissions[0].header
    assert header.name == ":authority"
    return str(header.string_match.safe_regex.regex)


@pytest.mark.parametrize(
    ("value", "matching", "other"),
    [
        ("a.example.com", ["a.example.com", "A.Example.COM:8080"], ["a.example.com.evil", "b"]),
        ("*.example.com", ["x.example.com", "x.EXAMPLE.com:443"], ["example.org", "x.example.co"]),
        ("api*", ["api", "API.internal:80"], ["xapi"]),
    ],
)
def test_hosts_match_case_insensitively_with_any_port(
    value: str, matching: list[str], other: list[str]
) -> None:
    # Envoy's safe_regex is a full match, like Python's re.fullmatch (RE2 syntax subset).
    regex = re.compile(_host_regex(value))
    assert all(regex.fullmatch(h) for h in matching)
    assert not any(regex.fullmatch(h) for h in other)


def test_namespace_is_a_principal_regex() -> None:
    policy = single(AuthzRule(sources=((AuthzMatch("source.namespace", ("prod",)),),)))
    regex = re.compile(policy.principals[0].authenticated.principal_name.safe_regex.regex)
    assert regex.fullmatch("spiffe://cluster.local/ns/prod/sa/x")
    assert not regex.fullmatch("spiffe://cluster.local/ns/prod-2/sa/x")


def test_empty_allow_keeps_rules_present_and_denies_everything() -> None:
    rbac = build_rbac((AuthzPolicy("ns/closed", "ALLOW", ()),), "ALLOW")
    assert rbac.HasField("rules")
    assert rbac.rules.action == rbac_pb2.RBAC.ALLOW
    assert len(rbac.rules.policies) == 0


def test_actions_and_policy_names() -> None:
    policies = (
        AuthzPolicy("a/deny", "DENY", (AuthzRule(), AuthzRule())),
        AuthzPolicy("b/audit", "AUDIT", (AuthzRule(),)),
    )
    deny = build_rbac(policies, "DENY")
    assert deny.rules.action == rbac_pb2.RBAC.DENY
    assert sorted(deny.rules.policies) == [
        envoy_policy_name("a/deny", 0),
        "ns[a]-policy[deny]-rule[1]",
    ]
    audit = build_rbac(policies, "AUDIT")
    assert audit.rules.action == rbac_pb2.RBAC.LOG
    assert list(audit.rules.policies) == ["ns[b]-policy[audit]-rule[0]"]
    # A match-all rule: any permission, any principal.
    policy = deny.rules.policies["ns[a]-policy[deny]-rule[0]"]
    assert policy.permissions[0].any and policy.principals[0].any


def test_rule_ands_sources_operations_and_conditions() -> None:
    rule = AuthzRule(
        sources=(
            (AuthzMatch("source.ip", ("10.0.0.0/8", "192.168.0.1")),),
            (AuthzMatch("remote.ip", ("::1",), negate=True),),
        ),
        operations=(
            (AuthzMatch("request.method", ("GET",)), AuthzMatch("request.path", ("/a*",))),
        ),
        conditions=(
            AuthzMatch("request.headers", ("*",), "x-user"),
            AuthzMatch("destination.port", ("9080",)),
            AuthzMatch("source.principal", ("*",)),
        ),
    )
    got = as_dict(single(rule))
    assert got["principals"] == [
        {
            "and_ids": {
                "ids": [
                    {
                        "or_ids": {
                            "ids": [
                                {
                                    "or_ids": {
                                        "ids": [
                                            {
                                                "direct_remote_ip": {
                                                    "address_prefix": "10.0.0.0",
                                                    "prefix_len": 8,
                                                }
                                            },
                                            {
                                                "direct_remote_ip": {
                                                    "address_prefix": "192.168.0.1",
                                                    "prefix_len": 32,
                                                }
                                            },
                                        ]
                                    }
                                },
                                {
                                    "not_id": {
                                        "remote_ip": {"address_prefix": "::1", "prefix_len": 128}
                                    }
                                },
                            ]
                        }
                    },
                    {"authenticated": {"principal_name": {"safe_regex": {"regex": ".+"}}}},
                ]
            }
        }
    ]
    assert got["permissions"] == [
        {
            "and_rules": {
                "rules": [
                    {
                        "and_rules": {
                            "rules": [
                                {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
                                {"url_path": {"path": {"prefix": "/a"}}},
                            ]
                        }
                    },
                    {"header": {"name": "x-user", "present_match": True}},
                    {"destination_port": 9080},
                ]
            }
        }
    ]


def _metadata_of(principal: rbac_pb2.Principal) -> tuple[list[str], dict[str, object]]:
    assert principal.metadata.filter == JWT_FILTER_NAME
    return [p.key for p in principal.metadata.path], as_dict(principal.metadata.value)


def test_request_principal_is_issuer_and_subject_from_jwt_metadata() -> None:
    rule = AuthzRule(
        sources=((AuthzMatch("request.auth.principal", ("https://iss.example.com/alice",)),),)
    )
    ids = single(rule).principals[0].and_ids.ids
    assert [_metadata_of(p) for p in ids] == [
        ([JWT_PAYLOAD_METADATA, "iss"], {"string_match": {"exact": "https://iss.example.com"}}),
        ([JWT_PAYLOAD_METADATA, "sub"], {"string_match": {"exact": "alice"}}),
    ]
    # "*": any verified token (the issuer is present).
    anyone = AuthzRule(sources=((AuthzMatch("request.auth.principal", ("*",)),),))
    assert _metadata_of(single(anyone).principals[0]) == (
        [JWT_PAYLOAD_METADATA, "iss"],
        {"present_match": True},
    )


def test_claims_match_a_string_or_a_list_member() -> None:
    rule = AuthzRule(conditions=(AuthzMatch("request.auth.claims", ("admins",), "realm.groups"),))
    ids = single(rule).principals[0].or_ids.ids
    assert [_metadata_of(p) for p in ids] == [
        ([JWT_PAYLOAD_METADATA, "realm", "groups"], {"string_match": {"exact": "admins"}}),
        (
            [JWT_PAYLOAD_METADATA, "realm", "groups"],
            {"list_match": {"one_of": {"string_match": {"exact": "admins"}}}},
        ),
    ]


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"experimental\.envoy"):
        single(AuthzRule(conditions=(AuthzMatch("experimental.envoy", ("x",)),)))


def _jwt() -> JwtAuthn:
    return JwtAuthn(
        (
            JwtProvider(
                "ns/ra/0",
                "https://iss",
                audiences=("a",),
                jwks='{"keys": []}',
                from_headers=(JwtHeader("x-token", "Bearer "),),
                from_params=("tok",),
                forward=True,
                output_payload_to_header="x-payload",
            ),
            JwtProvider("ns/ra/1", "other", jwks="{}"),
        )
    )


def test_jwt_authn_providers_and_requirement() -> None:
    config = build_jwt_authn(_jwt())
    first = config.providers["ns/ra/0"]
    assert first.issuer == "https://iss" and list(first.audiences) == ["a"]
    assert first.local_jwks.inline_string == '{"keys": []}'
    assert [(h.name, h.value_prefix) for h in first.from_headers] == [("x-token", "Bearer ")]
    assert list(first.from_params) == ["tok"]
    assert first.forward and first.forward_payload_header == "x-payload"
    assert first.payload_in_metadata == JWT_PAYLOAD_METADATA
    (rule,) = config.rules
    assert rule.match.prefix == "/"
    requirements = rule.requires.requires_any.requirements
    assert [r.provider_name for r in requirements[:2]] == ["ns/ra/0", "ns/ra/1"]
    # Missing tokens pass; present but invalid ones match no requirement (401).
    assert requirements[2].HasField("allow_missing")


def test_security_filters_run_first_in_order_then_router() -> None:
    hcm = ir.HttpConnectionManager(
        "s",
        route_config_name="r",
        http_filters=("jwt_authn", "rbac_deny", "rbac_allow", "rbac_audit"),
        jwt=_jwt(),
        authz=(AuthzPolicy("ns/d", "DENY", (AuthzRule(),)), AuthzPolicy("ns/a", "ALLOW", ())),
    )
    filters = build_http_filters(hcm)
    assert [f.name for f in filters] == [
        JWT_FILTER_NAME,
        "envoy.filters.http.rbac.deny",
        "envoy.filters.http.rbac.allow",
        "envoy.filters.http.rbac.audit",
        "envoy.filters.http.router",
    ]
    assert filters[0].typed_config.Is(jwt_pb2.JwtAuthentication.DESCRIPTOR)
    allow = rbac_filter_pb2.RBAC()
    filters[2].typed_config.Unpack(allow)
    assert allow.HasField("rules") and not allow.rules.policies


def test_jwt_filter_without_providers_is_an_error() -> None:
    hcm = ir.HttpConnectionManager("s", route_config_name="r", http_filters=("jwt_authn",))
    with pytest.raises(ValueError, match="no JWT providers"):
        build_http_filters(hcm)
