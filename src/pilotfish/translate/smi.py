"""SMI TrafficSplit and TrafficTarget, converted to Istio VirtualServices and
AuthorizationPolicies.

Theory of operation:

- **TrafficSplit** ``<name>`` becomes VirtualService ``<name>-smi-split`` in
  its namespace for the root Service's host (no gateways: the mesh's
  sidecars). SMI weights are whole numbers of any size; they are scaled to
  percentages summing to 100 (largest remainder first), and weight-0 backends
  are left out. A destination carries no port: as SMI requires, traffic to a
  root Service port goes to the same port of each backend. With ``matches``
  (v1alpha3 on), only requests matching one of the named HTTPRouteGroups'
  matches are split; the others go to the root Service itself, as the spec
  says. An HTTPRouteGroup match is a ``pathRegex`` anchored at the start of
  the path only (so ``/api`` is the regex ``(?:/api).*`` for Envoy, whose
  regexes match the whole path), methods (``*`` is any) and header regexes.
- **TrafficTarget** becomes an ALLOW AuthorizationPolicy
  ``<name>-smi-access`` in the destination's namespace. An
  AuthorizationPolicy selects workloads by labels, SMI by service account, so
  the policy selects the label set of every workload declared to run as the
  destination service account (Pods, pod templates, Workloads,
  WorkloadEntries: ``api.validation.pod_index``), one policy per distinct label
  set. Sources are principals ``*/ns/<namespace>/sa/<name>`` (any trust
  domain: Pilotfish has one). Each selected HTTPRouteGroup match is one rule
  (paths, methods, header conditions); TCPRoute ports restrict those rules, or,
  without HTTP rules, are the rules. Once an ALLOW policy selects a workload,
  Istio denies every request no rule allows: SMI's deny-by-default for the
  destination. A match Istio's policy language cannot express (a path regex
  that is not a literal prefix or exact path) is left out, which denies it,
  and reported: leaving a condition out would allow more than the user wrote.
- SMI has no status; problems are diagnostics for ``analyze``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.core.workloads import WORKLOAD_KINDS
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.common import Destination, StringMatch, TypeWorkloadSelector
from pilotfish.api.networking.virtual_service import (
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualServiceSpec,
)
from pilotfish.api.resource import Resource
from pilotfish.api.security.authorization_policy import (
    AuthorizationPolicySpec,
    Condition,
    Operation,
    Rule,
    RuleFrom,
    RuleTo,
    Source,
)
from pilotfish.api.smi.types import (
    HTTPMatch,
    HTTPRouteGroupSpec,
    SMITCPRouteSpec,
    TrafficSplitSpec,
    TrafficTargetSpec,
)
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.pod_index import PodIndex
from pilotfish.translate.conversion import Conversion, ConversionContext
from pilotfish.translate.converter_cache import memoized
from pilotfish.translate.derived_resource import derived_resource

__all__ = ["convert_smi", "istio_path", "percentages"]

_SPLIT_SUFFIX: Final = "smi-split"
_ACCESS_SUFFIX: Final = "smi-access"
_ANY: Final = frozenset({"", ".*", "/.*", ".+", "^", "^.*", "^/.*"})
# Characters that make a pattern more than a literal (after unescaping).
_META: Final = re.compile(r"[.^$*+?()\[\]{}|\\]")


def _reads(resource: Resource) -> bool:
    """The resources the conversion depends on: SMI kinds, Services, and what
    ``PodIndex`` reads for TrafficTargets' service accounts."""
    return resource.kind in _READ_KINDS or resource.kind in WORKLOAD_KINDS


_READ_KINDS: Final = frozenset(
    {
        "TrafficSplit",
        "TrafficTarget",
        "HTTPRouteGroup",
        "SMITCPRoute",
        "Service",
        "Workload",
        "WorkloadEntry",
    }
)


def _convert_smi(resources: tuple[Resource, ...], ctx: ConversionContext) -> Conversion:
    """VirtualServices for TrafficSplits and AuthorizationPolicies for TrafficTargets."""
    splits = [r for r in resources if r.kind == "TrafficSplit"]
    targets = [r for r in resources if r.kind == "TrafficTarget"]
    if not splits and not targets:
        return Conversion()
    groups = {(r.namespace, r.name): r for r in resources if r.kind == "HTTPRouteGroup"}
    tcp_routes = {(r.namespace, r.name): r for r in resources if r.kind == "SMITCPRoute"}
    derived: list[Resource] = []
    diagnostics: list[Diagnostic] = []
    hosts: dict[str, Resource] = {}
    services = {
        (r.namespace, r.name): r.spec
        for r in resources
        if r.kind == "Service" and isinstance(r.spec, ServiceSpec)
    }
    for split in sorted(splits, key=lambda r: r.key):
        f = Findings(split)
        _check_services(split, services, f)
        vs = _split(split, groups, ctx, f, hosts)
        if vs is not None:
            derived.append(vs)
        diagnostics += f.items
    pods = PodIndex(resources) if targets else None
    for target in sorted(targets, key=lambda r: r.key):
        f = Findings(target)
        assert pods is not None
        derived += _target(target, groups, tcp_routes, pods, f)
        diagnostics += f.items
    return Conversion(tuple(derived), diagnostics=tuple(diagnostics))


#: The converter ``derive`` runs (cached on the resources it reads).
convert_smi = memoized(_reads, _convert_smi)


# -- TrafficSplit -----------------------------------------------------------------


def percentages(weights: Sequence[int]) -> list[int]:
    """Whole-number weights scaled to percentages summing to 100 (largest remainder)."""
    total = sum(weights)
    if total <= 0:
        return [0 for _ in weights]
    exact = [w * 100 / total for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: 100 - sum(shares)]:
        shares[i] += 1
    return shares


def _host(service: str, namespace: str, ctx: ConversionContext) -> str:
    if "." in service:
        return service
    return f"{service}.{namespace}.svc.{ctx.domain_suffix}"


def _check_services(
    split: Resource, services: Mapping[tuple[str, str], ServiceSpec], f: Findings
) -> None:
    """SMI: the root and backend Services exist, and every backend has the root's ports."""
    spec = split.spec
    assert isinstance(spec, TrafficSplitSpec)
    if "." in spec.service:
        return  # a host name, not a Service of this namespace
    root = services.get((split.namespace, spec.service))
    if root is None:
        f.warning("spec.service", f"Service {split.namespace}/{spec.service} not found")
        return
    root_ports = sorted(p.port for p in root.ports)
    for i, backend in enumerate(spec.backends):
        if backend.weight == 0 or "." in backend.service:
            continue
        found = services.get((split.namespace, backend.service))
        if found is None:
            f.warning(
                f"spec.backends[{i}].service",
                f"Service {split.namespace}/{backend.service} not found: its share fails",
            )
            continue
        missing = [p for p in root_ports if p not in {q.port for q in found.ports}]
        if missing:
            f.warning(
                f"spec.backends[{i}].service",
                f"Service {backend.service} lacks port(s) {missing} of {spec.service}: SMI "
                "requires every backend to have the root Service's ports",
            )


def _split(
    split: Resource,
    groups: Mapping[tuple[str, str], Resource],
    ctx: ConversionContext,
    f: Findings,
    hosts: dict[str, Resource],
) -> Resource | None:
    spec = split.spec
    assert isinstance(spec, TrafficSplitSpec)
    root = _host(spec.service, split.namespace, ctx)
    if root in hosts:
        f.warning(
            "spec.service",
            f"TrafficSplit {hosts[root].namespace}/{hosts[root].name} already splits {root}: "
            "this one is ignored",
        )
        return None
    backends = [b for b in spec.backends if b.weight > 0]
    shares = percentages([b.weight for b in backends])
    weighted = [
        HTTPRouteDestination(
            destination=Destination(host=_host(b.service, split.namespace, ctx)), weight=share
        )
        for b, share in zip(backends, shares, strict=True)
        if share > 0
    ]
    if not weighted:
        return None
    hosts[root] = split
    http: list[HTTPRoute] = []
    if spec.matches:
        requests: list[HTTPMatchRequest] = []
        for i, ref in enumerate(spec.matches):
            group = groups.get((split.namespace, ref.name))
            if group is None:
                f.warning(
                    f"spec.matches[{i}].name",
                    f"HTTPRouteGroup {split.namespace}/{ref.name} not found: it matches nothing",
                )
                continue
            group_spec = group.spec
            assert isinstance(group_spec, HTTPRouteGroupSpec)
            requests += [_match_request(m) for m in group_spec.matches]
        if requests:
            http.append(HTTPRoute(match=requests, route=weighted))
        # SMI: requests the matches do not select go to the root Service.
        http.append(HTTPRoute(route=[HTTPRouteDestination(destination=Destination(host=root))]))
    else:
        http.append(HTTPRoute(route=weighted))
    vs = VirtualServiceSpec(hosts=[root], http=http)
    return derived_resource(
        "VirtualService", f"{split.name}-{_SPLIT_SUFFIX}", split.namespace, vs, [split]
    )


def _match_request(match: HTTPMatch) -> HTTPMatchRequest:
    uri = None
    if match.path_regex is not None and match.path_regex not in _ANY:
        # SMI anchors path regexes at the start only; Envoy's match the whole path.
        uri = StringMatch(regex=f"(?:{match.path_regex.removeprefix('^')}).*")
    methods = [m.upper() for m in match.methods]
    method = None
    if methods and "*" not in methods:
        method = StringMatch(regex="|".join(re.escape(m) for m in methods))
    headers = {name.lower(): StringMatch(regex=value) for name, value in match.headers.items()}
    return HTTPMatchRequest(name=match.name, uri=uri, method=method, headers=headers)


# -- TrafficTarget ----------------------------------------------------------------


def istio_path(path_regex: str | None) -> tuple[bool, str | None]:
    """An SMI path regex as an AuthorizationPolicy path: (expressible, path).

    ``(True, None)``: any path; ``(True, "/api*")``: a prefix; ``(True, "/a")``:
    exact (``$``-anchored literal); ``(False, None)``: not expressible."""
    if path_regex is None or path_regex in _ANY:
        return True, None
    body = path_regex.removeprefix("^")
    exact = body.endswith("$") and not body.endswith("\\$")
    if exact:
        body = body[:-1]
    elif body.endswith(".*"):
        body = body[:-2]
    literal = _literal(body)
    if not literal:
        return False, None
    return True, literal if exact else f"{literal}*"


def _literal(pattern: str) -> str | None:
    """The text a regex matches literally (``\\.`` is a dot), or None if it has operators."""
    out: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            if char.isalnum():
                return None  # \d, \w...: a character class
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif _META.match(char):
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)


def _header_values(value: str) -> list[str] | None:
    """A header regex as policy values (exact, ``prefix*``, ``*suffix``, ``*``), or None."""
    if value in (".*", ".+", "^.*$"):
        return ["*"]
    body = value.removeprefix("^").removesuffix("$")
    prefix = body.endswith(".*")
    suffix = body.startswith(".*") and not prefix
    core = body[:-2] if prefix else body[2:] if suffix else body
    literal = _literal(core)
    if not literal:
        return None
    return [f"{literal}*" if prefix else f"*{literal}" if suffix else literal]


def _target(
    target: Resource,
    groups: Mapping[tuple[str, str], Resource],
    tcp_routes: Mapping[tuple[str, str], Resource],
    pods: PodIndex,
    f: Findings,
) -> list[Resource]:
    spec = target.spec
    assert isinstance(spec, TrafficTargetSpec)
    namespace = spec.destination.namespace or target.namespace
    account = spec.destination.name
    label_sets = sorted(
        {
            tuple(sorted(p.labels.items()))
            for p in pods.declared
            if p.namespace == namespace and p.service_account == account and p.labels
        }
    )
    if not label_sets:
        f.warning(
            "spec.destination.name",
            f"no workload in {namespace!r} runs as service account {account!r}: "
            "this TrafficTarget protects nothing yet",
        )
        return []
    principals = [f"*/ns/{s.namespace or target.namespace}/sa/{s.name}" for s in spec.sources]
    rules = _rules(target, spec, groups, tcp_routes, principals, f)
    out = []
    for n, labels in enumerate(label_sets):
        policy = AuthorizationPolicySpec(
            selector=TypeWorkloadSelector(match_labels=dict(labels)),
            action="ALLOW",
            rules=rules,
        )
        name = f"{target.name}-{_ACCESS_SUFFIX}" + (f"-{n + 1}" if n else "")
        out.append(derived_resource("AuthorizationPolicy", name, namespace, policy, [target]))
    return out


def _rules(
    target: Resource,
    spec: TrafficTargetSpec,
    groups: Mapping[tuple[str, str], Resource],
    tcp_routes: Mapping[tuple[str, str], Resource],
    principals: list[str],
    f: Findings,
) -> list[Rule]:
    sources = [RuleFrom(source=Source(principals=principals))]
    ports: list[str] = []
    if spec.destination.port is not None:
        ports.append(str(spec.destination.port))
    any_port = False
    http_matches: list[tuple[str, HTTPMatch]] = []
    for i, ref in enumerate(spec.rules):
        key = (target.namespace, ref.name)
        if ref.kind == "TCPRoute":
            route = tcp_routes.get(key)
            if route is None:
                f.warning(f"spec.rules[{i}].name", f"TCPRoute {key[0]}/{key[1]} not found")
                continue
            route_spec = route.spec
            assert isinstance(route_spec, SMITCPRouteSpec)
            listed = route_spec.matches.ports if route_spec.matches is not None else []
            ports += [str(p) for p in listed if str(p) not in ports]
            any_port = any_port or not listed
        elif ref.kind == "HTTPRouteGroup":
            http_matches += _group_matches(ref.name, ref.matches, key, groups, f, i)
    port_limit = [] if any_port else ports
    if not http_matches:
        if not ports and not any_port:
            return []  # nothing allowed: the policy denies everything
        return [_rule(sources, Operation(ports=port_limit), [])]
    rules = []
    for path, match in http_matches:
        ok, istio = istio_path(match.path_regex)
        when = _conditions(match, path, f)
        if not ok or when is None:
            if not ok:
                f.warning(
                    path,
                    f"pathRegex {match.path_regex!r} is neither a literal prefix nor an exact "
                    "path, which authorization policies cannot express: this match is denied",
                )
            continue
        methods = [] if not match.methods or "*" in match.methods else [*match.methods]
        operation = Operation(paths=[istio] if istio else [], methods=methods, ports=port_limit)
        rules.append(_rule(sources, operation, when))
    return rules


def _rule(sources: list[RuleFrom], operation: Operation, when: list[Condition]) -> Rule:
    # ``from`` is a Python keyword: the field is set by its alias.
    return Rule.model_validate({"from": sources, "to": [RuleTo(operation=operation)], "when": when})


def _group_matches(
    name: str,
    wanted: list[str],
    key: tuple[str, str],
    groups: Mapping[tuple[str, str], Resource],
    f: Findings,
    i: int,
) -> list[tuple[str, HTTPMatch]]:
    group = groups.get(key)
    if group is None:
        f.warning(f"spec.rules[{i}].name", f"HTTPRouteGroup {key[0]}/{key[1]} not found")
        return []
    group_spec = group.spec
    assert isinstance(group_spec, HTTPRouteGroupSpec)
    by_name = {m.name: (f"spec.rules[{i}]", m) for m in group_spec.matches}
    for j, match_name in enumerate(wanted):
        if match_name not in by_name:
            f.warning(
                f"spec.rules[{i}].matches[{j}]",
                f"HTTPRouteGroup {name} has no match named {match_name!r}",
            )
    return [by_name[n] for n in (wanted or by_name) if n in by_name]


def _conditions(match: HTTPMatch, path: str, f: Findings) -> list[Condition] | None:
    when = []
    for header, value in sorted(match.headers.items()):
        values = _header_values(value)
        if values is None:
            f.warning(
                path,
                f"header {header!r} regex {value!r} is not a literal, prefix or suffix, which "
                "authorization policies cannot express: this match is denied",
            )
            return None
        when.append(Condition(key=f"request.headers[{header.lower()}]", values=values))
    return when
