"""VirtualService analyzers (Istio's ``analyzers/virtualservice`` and the
route-rule warnings of its VirtualService validation).

- IST0109 ConflictingMeshGatewayVirtualServiceHosts: two or more
  VirtualServices bound to the mesh (no ``gateways``, or ``mesh`` among them)
  define the same host (as an FQDN, within the namespaces ``exportTo`` makes
  them visible in); sidecars then use one of them, which one is undefined.
- IST0130 VirtualServiceUnreachableRule: an HTTP or TCP rule after a rule
  without matches (that one takes everything), a second rule without matches,
  or a rule all of whose matches earlier rules already have.
- IST0131 VirtualServiceIneffectiveMatch: one match of a rule that an earlier
  rule already has (the same conditions), or whose URI prefix an earlier
  match's prefix covers with the same other conditions.
- IST0132 VirtualServiceHostNotFoundInGateway: a VirtualService bound to a
  Gateway none of whose servers accept any of its hosts (``ns/host``
  server hosts only accept VirtualServices of ``ns``; ``./`` the Gateway's
  own namespace).

Rules are named as Istio names them: ``"name"`` when named, else ``#index``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.networking.virtual_service import HTTPMatchRequest, VirtualServiceSpec
from pilotfish.api.resource import Resource
from pilotfish.model.hosts import fqdn

__all__ = ["CODES", "check_virtual_services", "host_matches"]

CODES = ("IST0109", "IST0130", "IST0131", "IST0132")


def check_virtual_services(ctx: AnalysisContext) -> list[Diagnostic]:
    services = ctx.of(VirtualServiceSpec)
    found = _mesh_host_conflicts(ctx, services)
    gateways = {(r.namespace, r.name): (r, spec) for r, spec in ctx.of(GatewaySpec)}
    for r, spec in services:
        found += _unreachable(r, spec)
        found += _hosts_in_gateways(r, spec, gateways)
    return found


def host_matches(a: str, b: str) -> bool:
    """Do two host names (each possibly ``*`` or ``*.suffix``) share a name?"""
    a, b = a.lower(), b.lower()
    if a == b or "*" in (a, b):
        return True
    if a.startswith("*.") and b.endswith(a[1:]):
        return True
    return b.startswith("*.") and a.endswith(b[1:])


# -- IST0109 -----------------------------------------------------------------------


def _bound_to_mesh(spec: VirtualServiceSpec) -> bool:
    return not spec.gateways or "mesh" in spec.gateways


def _visible_in(r: Resource, spec: VirtualServiceSpec) -> set[str]:
    if not spec.export_to or "*" in spec.export_to:
        return {"*"}
    return {r.namespace if e == "." else e for e in spec.export_to}


def _mesh_host_conflicts(
    ctx: AnalysisContext, services: Sequence[tuple[Resource, VirtualServiceSpec]]
) -> list[Diagnostic]:
    by_host: dict[tuple[str, str], list[Resource]] = defaultdict(list)
    for r, spec in services:
        if not _bound_to_mesh(spec):
            continue
        for scope in _visible_in(r, spec):
            for host in dict.fromkeys(fqdn(h, r.namespace, ctx.domain_suffix) for h in spec.hosts):
                by_host[(scope, host)].append(r)
    found: list[Diagnostic] = []
    reported: set[tuple[str, str]] = set()
    for (scope, host), owners in sorted(by_host.items(), key=lambda kv: kv[0]):
        if scope != "*":
            # Exported everywhere, a host the scoped one falls under is visible here too.
            owners = owners + [
                o
                for (other_scope, other), rs in by_host.items()
                if other_scope == "*" and host_matches(host, other)
                for o in rs
            ]
        unique = {(o.namespace, o.name): o for o in owners}
        if len(unique) < 2:
            continue
        names = ",".join(f"{ns}/{name}" for ns, name in sorted(unique))
        for key, owner in sorted(unique.items()):
            if key in reported:
                continue
            reported.add(key)
            found.append(
                report(
                    owner,
                    "metadata.name",
                    "IST0109",
                    f"VirtualServices {names} bound to the mesh define the same host {host}: "
                    "sidecars use one of them, which one is undefined",
                )
            )
    return found


# -- IST0130 / IST0131 -------------------------------------------------------------


def _conditions(match: BaseModel) -> str:
    """A match's conditions, comparable (its name and stat prefix left out)."""
    data = match.model_dump(exclude_none=True, exclude_defaults=True, by_alias=True)
    data.pop("name", None)
    data.pop("statPrefix", None)
    return json.dumps(data, sort_keys=True)


def _prefix_and_rest(match: HTTPMatchRequest) -> tuple[str, str] | None:
    """A URI-prefix match's prefix, and its other conditions (None: not a prefix match).

    As in Istio, a match without a method counts as one on GET: a later match
    that differs only by ``method: {exact: GET}`` is then covered. Unlike
    Istio, conditions Istio leaves out of the comparison (sourceLabels,
    gateways, scheme...) must be equal too, so a match that only looks covered
    is not reported.
    """
    if match.uri is None or not match.uri.prefix:
        return None
    data: dict[str, Any] = json.loads(_conditions(match))
    data.pop("uri", None)
    data.setdefault("method", {"exact": "GET"})
    return match.uri.prefix, json.dumps(data, sort_keys=True)


def _unreachable(r: Resource, spec: VirtualServiceSpec) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    sections: tuple[tuple[str, Sequence[Any]], ...] = (
        ("http", spec.http),
        ("tcp", spec.tcp),
        ("tls", spec.tls),
    )
    for section, rules in sections:
        seen: dict[str, int] = {}
        catch_all = -1
        prefixes: list[tuple[str, str, str, str]] = []  # prefix, rest, rule label, match label
        for i, rule in enumerate(rules):
            label = _rule_label(rule, i)
            path = f"spec.{section}[{i}]"
            if not rule.match:
                if catch_all >= 0:
                    found.append(_unused(r, path, label, "only the last rule can have no matches"))
                catch_all = i
                continue
            if catch_all >= 0:
                found.append(_unused(r, path, label, "route without matches defined before"))
                continue
            duplicates = 0
            for j, match in enumerate(rule.match):
                key = _conditions(match)
                mlabel = _match_label(match, j)
                if key in seen:
                    duplicates += 1
                    earlier = _rule_label(rules[seen[key]], seen[key])
                    found.append(_ineffective(r, f"{path}.match[{j}]", label, mlabel, earlier))
                    continue
                seen[key] = i
                if isinstance(match, HTTPMatchRequest):
                    pr = _prefix_and_rest(match)
                    if pr is not None:
                        for prefix, rest, rule_label, match_label in prefixes:
                            if pr[1] == rest and pr[0] != prefix and pr[0].startswith(prefix):
                                found.append(
                                    _ineffective(
                                        r,
                                        f"{path}.match[{j}]",
                                        label,
                                        f"{mlabel} of prefix {pr[0]}",
                                        f"{match_label} of prefix {prefix} on {rule_label}",
                                    )
                                )
                                break
                        prefixes.append((pr[0], pr[1], label, mlabel))
            if duplicates == len(rule.match):
                found.append(_unused(r, path, label, "all matches used by prior rules"))
    return found


def _rule_label(rule: Any, index: int) -> str:
    name = getattr(rule, "name", None)
    return f'"{name}"' if name else f"#{index}"


def _match_label(match: Any, index: int) -> str:
    name = getattr(match, "name", None)
    return f'"{name}"' if name else f"#{index}"


def _unused(r: Resource, path: str, label: str, reason: str) -> Diagnostic:
    return report(r, path, "IST0130", f"rule {label} is never used ({reason})")


def _ineffective(r: Resource, path: str, label: str, match: str, earlier: str) -> Diagnostic:
    return report(
        r,
        path,
        "IST0131",
        f"rule {label} match {match} is never used (duplicate/overlapping match in rule {earlier})",
    )


# -- IST0132 -----------------------------------------------------------------------


def _gateway_key(ref: str, namespace: str) -> tuple[str, str]:
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return ns, name
    labels = ref.split(".")
    return (labels[1], labels[0]) if len(labels) >= 2 else (namespace, ref)


def _server_accepts(server_host: str, gateway_ns: str, vs_ns: str, vs_host: str) -> bool:
    ns, sep, name = server_host.partition("/")
    if sep:
        if ns == ".":
            ns = gateway_ns
        if ns != "*" and ns != vs_ns:
            return False
    else:
        name = server_host
    return host_matches(name, vs_host)


def _hosts_in_gateways(
    r: Resource,
    spec: VirtualServiceSpec,
    gateways: dict[tuple[str, str], tuple[Resource, GatewaySpec]],
) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    for i, ref in enumerate(spec.gateways):
        if ref == "mesh":
            continue
        key = _gateway_key(ref, r.namespace)
        if key not in gateways:
            continue  # a missing gateway is reported as IST0101
        gw, gw_spec = gateways[key]
        accepted = any(
            _server_accepts(sh, gw.namespace, r.namespace, vh)
            for server in gw_spec.servers
            for sh in server.hosts
            for vh in spec.hosts
        )
        if not accepted and spec.hosts:
            found.append(
                report(
                    r,
                    f"spec.gateways[{i}]",
                    "IST0132",
                    f"no host of {', '.join(spec.hosts)} is served by Gateway "
                    f"{key[0]}/{key[1]}: the gateway never routes to this VirtualService",
                )
            )
    return found
