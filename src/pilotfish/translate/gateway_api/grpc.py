"""GRPCRoute rules -> VirtualService HTTP rules on gRPC paths (``/<service>/<method>``).

A method match becomes a path match: service and method -> exact
``/pkg.Service/Method``; service only -> prefix ``/pkg.Service/``; method only
-> regex ``/[^/]+/Method``; RegularExpression matches combine the two regexes.
Filters and backends are handled as for HTTPRoute (``http.rule_parts``).
The spec's precedence: a method match before none, the longer service and
method first, then more header matches, then the oldest route.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pilotfish.api.gateway_api.grpc_route import GRPCRouteMatch, GRPCRouteRule
from pilotfish.api.networking.common import StringMatch
from pilotfish.api.networking.virtual_service import HTTPMatchRequest
from pilotfish.api.resource import Resource
from pilotfish.translate.gateway_api.backends import BackendProblem
from pilotfish.translate.gateway_api.http import RuleEntry, rule_parts, vs_rule
from pilotfish.translate.gateway_api.index import ConfigIndex

__all__ = ["grpc_path", "grpc_rule_entries"]


def grpc_path(match: GRPCRouteMatch) -> StringMatch:
    m = match.method
    if m is None:
        return StringMatch(prefix="/")
    if m.type == "RegularExpression":
        return StringMatch(regex=f"/{m.service or '[^/]+'}/{m.method or '[^/]+'}")
    if m.service and m.method:
        return StringMatch(exact=f"/{m.service}/{m.method}")
    if m.service:
        return StringMatch(prefix=f"/{m.service}/")
    return StringMatch(regex=f"/[^/]+/{re.escape(m.method or '')}")


def _key(route: Resource, ri: int, mi: int, match: GRPCRouteMatch) -> tuple[object, ...]:
    m = match.method
    return (
        m is None,
        -len(m.service or "") if m else 0,
        -len(m.method or "") if m else 0,
        -len(match.headers),
        route.metadata.creation_timestamp or "~",
        route.namespace,
        route.name,
        ri,
        mi,
        0,
    )


def grpc_rule_entries(
    route: Resource, rules: Sequence[GRPCRouteRule], index: ConfigIndex
) -> tuple[list[RuleEntry], list[BackendProblem]]:
    entries: list[RuleEntry] = []
    problems: list[BackendProblem] = []
    for ri, rule in enumerate(rules):
        parts, found = rule_parts(rule, route, index, f"spec.rules[{ri}]")
        problems.extend(found)
        label = rule.name or str(ri)
        for mi, match in enumerate(rule.matches or [GRPCRouteMatch()]):
            headers = {
                h.name.lower(): StringMatch(regex=h.value)
                if h.type == "RegularExpression"
                else StringMatch(exact=h.value)
                for h in match.headers
            }
            vs_match = HTTPMatchRequest(uri=grpc_path(match), headers=headers)
            name = f"{route.namespace}.{route.name}.{label}.{mi}"
            entries.append(
                RuleEntry(_key(route, ri, mi, match), vs_rule(name, vs_match, parts, ""))
            )
    return entries, problems
