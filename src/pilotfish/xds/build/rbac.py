"""IR authorization policies -> Envoy ``envoy.filters.http.rbac`` filters.

Theory of operation. Istio evaluates a workload's AuthorizationPolicies as
DENY first, then ALLOW (if any ALLOW policy applies, one must match), while
AUDIT only marks. Envoy's RBAC filter has one action per filter, so an HTTP
connection manager gets up to three of them, in the order DENY, ALLOW, LOG
(AUDIT); a request denied by one never reaches the next. A TCP proxy gets the
same three as network filters (``envoy.filters.network.rbac``, stat prefix
``tcp.`` as in Istio) in front of ``tcp_proxy``: they decide once per
connection and close a denied one. Both kinds share the policy tree built
here; TCP rules simply hold no request fields (the translation removed them).

Each Istio rule becomes one Envoy policy named
``ns[<namespace>]-policy[<name>]-rule[<index>]`` (Istio's naming, so access
logs and stats read the same). An Envoy policy matches when any of its
permissions and any of its principals match; Pilotfish gives each exactly
one, an AND of:

- permission: the OR of the rule's operations (each an AND of its fields)
  and the request-side ``when`` conditions (headers, host, method, path,
  destination port and address);
- principal: the OR of the rule's sources and the peer/JWT-side ``when``
  conditions (principals, namespaces, addresses, JWT claims).

Within a field the values are ORed; a ``not`` field is the negation of that
OR. Strings follow Istio's rules: ``abc`` exact, ``abc*`` prefix, ``*abc``
suffix, ``*`` present (non-empty). A policy with no rules contributes no
Envoy policy: an ALLOW filter whose map is empty denies everything, which is
exactly Istio's "ALLOW with no rules matches nothing".

JWT attributes are read from the dynamic metadata the ``jwt_authn`` filter
writes for a verified token (``payload_in_metadata``, see ``xds/build/jwt.py``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2 as lc_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from pilotfish import ir
from pilotfish.ir.security import AuthzMatch, AuthzPolicy, AuthzRule
from pilotfish.xds.build._common import any_of

__all__ = [
    "JWT_FILTER_NAME",
    "JWT_PAYLOAD_METADATA",
    "NETWORK_RBAC_FILTER_NAME",
    "NETWORK_RBAC_STAT_PREFIX",
    "RBAC_FILTER_NAME",
    "RbacAction",
    "build_network_rbac",
    "build_network_rbac_filters",
    "build_rbac",
    "build_rbac_rules",
    "envoy_policy_name",
    "istio_string_matcher",
]

RBAC_FILTER_NAME = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER_NAME = "envoy.filters.network.rbac"
NETWORK_RBAC_STAT_PREFIX = "tcp."
# Filter order on both layers: a connection or request denied by one never
# reaches the next.
_ACTION_ORDER = ("DENY", "ALLOW", "AUDIT")
JWT_FILTER_NAME = "envoy.filters.http.jwt_authn"
# Key under which jwt_authn stores a verified token's payload in dynamic metadata
# (the same for every provider: only one provider verifies a request's token).
JWT_PAYLOAD_METADATA = "jwt_payload"

RbacAction = str  # "ALLOW" | "DENY" | "AUDIT"

_ENVOY_ACTION = {
    "ALLOW": rbac_pb2.RBAC.ALLOW,
    "DENY": rbac_pb2.RBAC.DENY,
    "AUDIT": rbac_pb2.RBAC.LOG,
}

# Fields compared with the peer or the token (Envoy principals); all others are
# properties of the request (Envoy permissions).
_PRINCIPAL_FIELDS = frozenset(
    {
        "source.principal",
        "source.namespace",
        "source.ip",
        "remote.ip",
        "request.auth.principal",
        "request.auth.claims",
        "request.auth.audiences",
        "request.auth.presenter",
    }
)
_PORT_RE = re.compile(r":[0-9]+$")


def envoy_policy_name(policy_name: str, index: int) -> str:
    """Istio's name of rule ``index`` of AuthorizationPolicy ``"<ns>/<name>"``."""
    namespace, _, name = policy_name.partition("/")
    return f"ns[{namespace}]-policy[{name}]-rule[{index}]"


def istio_string_matcher(
    value: str, *, prefix: str = "", ignore_case: bool = False
) -> string_pb2.StringMatcher:
    """Istio's string rules as a ``StringMatcher``: ``abc`` exact, ``abc*`` prefix,
    ``*abc`` suffix, ``*`` any non-empty value. ``prefix`` is prepended to exact
    and prefix forms (used to add ``spiffe://`` to principals)."""
    if value == "*":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".+"))
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


# -- leaf matchers ---------------------------------------------------------------------


def _header(name: str, value: str) -> route_pb2.HeaderMatcher:
    if value == "*":
        return route_pb2.HeaderMatcher(name=name, present_match=True)
    return route_pb2.HeaderMatcher(name=name, string_match=istio_string_matcher(value))


def _host(value: str) -> route_pb2.HeaderMatcher:
    """``:authority`` case-insensitively; a host without a port also matches it
    with any port (``example.com`` matches ``example.com:8080``), as in Istio."""
    if value == "*":
        return route_pb2.HeaderMatcher(name=":authority", present_match=True)
    if _PORT_RE.search(value):
        matcher = istio_string_matcher(value, ignore_case=True)
    else:
        if value.endswith("*"):
            pattern = re.escape(value[:-1]) + ".*"
        elif value.startswith("*"):
            pattern = ".*" + re.escape(value[1:]) + "(:[0-9]+)?"
        else:
            pattern = re.escape(value) + "(:[0-9]+)?"
        matcher = string_pb2.StringMatcher(
            safe_regex=regex_pb2.RegexMatcher(regex=f"(?i){pattern}")
        )
    return route_pb2.HeaderMatcher(name=":authority", string_match=matcher)


def _cidr(value: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(value, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
    )


def _metadata(path: Sequence[str], value: value_pb2.ValueMatcher) -> metadata_pb2.MetadataMatcher:
    return metadata_pb2.MetadataMatcher(
        filter=JWT_FILTER_NAME,
        path=[
            metadata_pb2.MetadataMatcher.PathSegment(key=key)
            for key in (JWT_PAYLOAD_METADATA, *path)
        ],
        value=value,
    )


def _claim_string(value: str) -> value_pb2.ValueMatcher:
    if value == "*":
        return value_pb2.ValueMatcher(present_match=True)
    return value_pb2.ValueMatcher(string_match=istio_string_matcher(value))


def _claim_ids(path: Sequence[str], value: str) -> list[rbac_pb2.Principal]:
    """A claim that is a string equal to ``value`` or a list containing it."""
    string = _claim_string(value)
    listed = value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=string))
    return [
        rbac_pb2.Principal(metadata=_metadata(path, string)),
        rbac_pb2.Principal(metadata=_metadata(path, listed)),
    ]


def _request_principal(value: str) -> rbac_pb2.Principal:
    """``<iss>/<sub>``, split at the last ``/`` (issuers are often URLs): both match."""
    issuer, slash, subject = value.rpartition("/")
    if not slash:
        issuer, subject = value, ""
    ids = [rbac_pb2.Principal(metadata=_metadata(["iss"], _claim_string(issuer or "*")))]
    if subject:
        ids.append(rbac_pb2.Principal(metadata=_metadata(["sub"], _claim_string(subject))))
    return _and_ids(ids)


def _namespace_regex(value: str) -> str:
    if value == "*":
        ns = "[^/]+"
    elif value.endswith("*"):
        ns = re.escape(value[:-1]) + "[^/]*"
    elif value.startswith("*"):
        ns = "[^/]*" + re.escape(value[1:])
    else:
        ns = re.escape(value)
    return f".*/ns/{ns}/.*"


def _authenticated(matcher: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    return rbac_pb2.Principal(
        authenticated=rbac_pb2.Principal.Authenticated(principal_name=matcher)
    )


def _principal_ids(match: AuthzMatch, value: str) -> list[rbac_pb2.Principal]:
    """The principals one value of ``match`` stands for (ORed by the caller)."""
    field = match.field
    if field == "source.principal":
        return [_authenticated(istio_string_matcher(value, prefix="spiffe://"))]
    if field == "source.namespace":
        regex = regex_pb2.RegexMatcher(regex=_namespace_regex(value))
        return [_authenticated(string_pb2.StringMatcher(safe_regex=regex))]
    if field == "source.ip":
        return [rbac_pb2.Principal(direct_remote_ip=_cidr(value))]
    if field == "remote.ip":
        return [rbac_pb2.Principal(remote_ip=_cidr(value))]
    if field == "request.auth.principal":
        return [_request_principal(value)]
    if field == "request.auth.claims":
        return _claim_ids(match.key.split("."), value)
    if field == "request.auth.audiences":
        return _claim_ids(["aud"], value)
    if field == "request.auth.presenter":
        return _claim_ids(["azp"], value)
    raise ValueError(f"unsupported authorization field {field!r}")


def _permission_rules(match: AuthzMatch, value: str) -> list[rbac_pb2.Permission]:
    field = match.field
    if field == "request.headers":
        return [rbac_pb2.Permission(header=_header(match.key, value))]
    if field == "request.method":
        return [rbac_pb2.Permission(header=_header(":method", value))]
    if field == "request.host":
        return [rbac_pb2.Permission(header=_host(value))]
    if field == "request.path":
        # url_path compares the path without the query string, as Istio does.
        path = path_pb2.PathMatcher(path=istio_string_matcher(value))
        return [rbac_pb2.Permission(url_path=path)]
    if field == "destination.port":
        return [rbac_pb2.Permission(destination_port=int(value))]
    if field == "destination.ip":
        return [rbac_pb2.Permission(destination_ip=_cidr(value))]
    if field == "connection.sni":
        return [rbac_pb2.Permission(requested_server_name=istio_string_matcher(value))]
    raise ValueError(f"unsupported authorization field {field!r}")


# -- combinators -----------------------------------------------------------------------


def _and_ids(ids: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if not ids:
        return rbac_pb2.Principal(any=True)
    if len(ids) == 1:
        return ids[0]
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=ids))


def _or_ids(ids: Sequence[rbac_pb2.Principal]) -> rbac_pb2.Principal:
    if len(ids) == 1:
        return ids[0]
    return rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=ids))


def _and_rules(rules: Sequence[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if not rules:
        return rbac_pb2.Permission(any=True)
    if len(rules) == 1:
        return rules[0]
    return rbac_pb2.Permission(and_rules=rbac_pb2.Permission.Set(rules=rules))


def _or_rules(rules: Sequence[rbac_pb2.Permission]) -> rbac_pb2.Permission:
    if len(rules) == 1:
        return rules[0]
    return rbac_pb2.Permission(or_rules=rbac_pb2.Permission.Set(rules=rules))


def _principal_of(match: AuthzMatch) -> rbac_pb2.Principal:
    any_value = _or_ids([p for v in match.values for p in _principal_ids(match, v)])
    return rbac_pb2.Principal(not_id=any_value) if match.negate else any_value


def _permission_of(match: AuthzMatch) -> rbac_pb2.Permission:
    any_value = _or_rules([p for v in match.values for p in _permission_rules(match, v)])
    return rbac_pb2.Permission(not_rule=any_value) if match.negate else any_value


def _split(matches: Sequence[AuthzMatch]) -> tuple[list[AuthzMatch], list[AuthzMatch]]:
    """(principal-side, permission-side) matches; empty value lists are dropped (unset)."""
    principal = [m for m in matches if m.values and m.field in _PRINCIPAL_FIELDS]
    permission = [m for m in matches if m.values and m.field not in _PRINCIPAL_FIELDS]
    return principal, permission


def _match_set(
    matches: Sequence[AuthzMatch],
) -> tuple[rbac_pb2.Principal, rbac_pb2.Permission]:
    principal, permission = _split(matches)
    return (
        _and_ids([_principal_of(m) for m in principal]),
        _and_rules([_permission_of(m) for m in permission]),
    )


def _rule_policy(rule: AuthzRule) -> rbac_pb2.Policy:
    ids: list[rbac_pb2.Principal] = []
    perms: list[rbac_pb2.Permission] = []
    # Sources, operations and conditions may each hold either side's fields
    # (a header is a request property even in a source); each OR set is split
    # into its two sides only when it cannot mix them.
    for sets, to_ids in ((rule.sources, True), (rule.operations, False)):
        if not sets:
            continue
        pairs = [_match_set(s) for s in sets]
        if to_ids and all(not _split(s)[1] for s in sets):
            ids.append(_or_ids([p for p, _ in pairs]))
        elif not to_ids and all(not _split(s)[0] for s in sets):
            perms.append(_or_rules([p for _, p in pairs]))
        else:
            raise ValueError(f"authorization set mixes peer and request fields: {sets!r}")
    cond_ids, cond_perms = _split(rule.conditions)
    ids.extend(_principal_of(m) for m in cond_ids)
    perms.extend(_permission_of(m) for m in cond_perms)
    return rbac_pb2.Policy(permissions=[_and_rules(perms)], principals=[_and_ids(ids)])


def build_rbac_rules(policies: Sequence[AuthzPolicy], action: RbacAction) -> rbac_pb2.RBAC:
    """The Envoy RBAC rules (one Envoy policy per Istio rule) of the ``action``
    policies among ``policies``; shared by the HTTP and the network filter."""
    rules = rbac_pb2.RBAC(action=_ENVOY_ACTION[action])
    for policy in policies:
        if policy.action != action:
            continue
        for index, rule in enumerate(policy.rules):
            rules.policies[envoy_policy_name(policy.name, index)].CopyFrom(_rule_policy(rule))
    return rules


def build_rbac(policies: Sequence[AuthzPolicy], action: RbacAction) -> rbac_filter_pb2.RBAC:
    """The RBAC filter config for the ``action`` policies among ``policies``.

    The ``rules`` field is always present, even with no Envoy policies: for ALLOW
    that denies every request (an ALLOW policy with no rules matches nothing).
    """
    return rbac_filter_pb2.RBAC(rules=build_rbac_rules(policies, action))


def build_network_rbac(
    policies: Sequence[AuthzPolicy], action: RbacAction
) -> network_rbac_pb2.RBAC:
    """The network RBAC filter config for the ``action`` policies among ``policies``.

    As with ``build_rbac``, ``rules`` is always present: an ALLOW filter without
    Envoy policies closes every connection.
    """
    return network_rbac_pb2.RBAC(
        rules=build_rbac_rules(policies, action), stat_prefix=NETWORK_RBAC_STAT_PREFIX
    )


def build_network_rbac_filters(proxy: ir.TcpProxy) -> list[lc_pb2.Filter]:
    """The network RBAC filters enforcing ``proxy.authz``, one per action present,
    in the order DENY, ALLOW, AUDIT (empty without policies)."""
    actions = {policy.action for policy in proxy.authz}
    return [
        lc_pb2.Filter(
            name=f"{NETWORK_RBAC_FILTER_NAME}.{action.lower()}",
            typed_config=any_of(build_network_rbac(proxy.authz, action)),
        )
        for action in _ACTION_ORDER
        if action in actions
    ]
