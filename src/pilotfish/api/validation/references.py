"""Cross-resource checks: names that point at things that do not exist.

These are warnings, not errors: configuration is often applied in pieces
(a VirtualService before its DestinationRule), and Istio itself accepts such
configuration and only reports it in analysis. Each warning points at the
line of the field that holds the dangling name.

Host names are compared as FQDNs, resolved relative to the namespace of the
resource that names them (``pilotfish.model.hosts.fqdn``); a ServiceEntry's
wildcard host (``*.example.com``) covers every name under it.

A Gateway's ``credentialName`` names a Secret of the namespace of the gateway
*workload* its selector picks (``istio-system`` for the built-in ingress
gateway), as translation and Istio look it up; the Gateway's own namespace
only when the selector picks no pod (that is reported apart). A security
policy's ``targetRef(s)`` name a Service or Gateway of the policy's namespace.

The codes are Istio's: IST0101 ReferencedResourceNotFound, IST0174
UnknownDestinationRuleHost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.common import Destination
from pilotfish.api.networking.destination_rule import DestinationRuleSpec
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.networking.service_entry import ServiceEntrySpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.api.resource import Resource
from pilotfish.api.security.authorization_policy import AuthorizationPolicySpec
from pilotfish.api.security.common import PolicyTargetReference
from pilotfish.api.security.request_authentication import RequestAuthenticationSpec
from pilotfish.api.validation.findings import Findings
from pilotfish.api.validation.pod_index import PodIndex
from pilotfish.model.hosts import fqdn, is_wildcard

__all__ = ["check_references", "gateway_key"]


@dataclass(frozen=True, slots=True)
class _Index:
    """What exists, by FQDN and by name."""

    hosts: frozenset[str]
    wildcards: tuple[str, ...]  # suffixes like ".example.com" from "*.example.com"
    subsets: dict[str, set[str]]  # DestinationRule host FQDN (or wildcard) -> subset names
    gateways: frozenset[tuple[str, str]]  # (namespace, name)
    namespaces: frozenset[str]
    suffix: str
    secrets: frozenset[tuple[str, str]] = frozenset()  # (namespace, name)
    services: frozenset[tuple[str, str]] = frozenset()  # (namespace, name)
    pods: PodIndex | None = None

    def resolve(self, host: str, namespace: str) -> str:
        return fqdn(host, namespace, self.suffix, known_namespaces=self.namespaces)

    def has_host(self, name: str) -> bool:
        if name in self.hosts:
            return True
        probe = name[1:] if name.startswith("*.") else "." + name
        return any(probe.endswith(w) for w in self.wildcards)

    def subsets_for(self, name: str) -> set[str]:
        found: set[str] = set()
        for host, names in self.subsets.items():
            if host == name or (is_wildcard(host) and (host == "*" or name.endswith(host[1:]))):
                found |= names
        return found


def check_references(
    resources: Sequence[Resource],
    domain_suffix: str = "cluster.local",
    derived_gateways: Iterable[tuple[str, str]] = (),
) -> list[Diagnostic]:
    """Warnings for dangling hosts, subsets and gateway names across ``resources``;
    ``derived_gateways`` (namespace, name) are Gateways converters made from them,
    which exist too (a reference to one is IST0165, ``analysis.internal_gateways``)."""
    index = _build_index(resources, domain_suffix)
    if derived_gateways:
        index = replace(index, gateways=index.gateways | frozenset(derived_gateways))
    found: list[Diagnostic] = []
    for r in resources:
        f = Findings(r)
        if isinstance(r.spec, VirtualServiceSpec):
            _check_virtual_service(f, r, r.spec, index)
        elif isinstance(r.spec, DestinationRuleSpec):
            host = r.spec.host
            if host and not is_wildcard(host):
                name = index.resolve(host, r.namespace)
                if not index.has_host(name):
                    f.warning(
                        "spec.host", f"host {name!r} matches no Service or ServiceEntry", "IST0174"
                    )
        elif isinstance(r.spec, GatewaySpec):
            _check_gateway_credentials(f, r, r.spec, index)
        elif isinstance(r.spec, AuthorizationPolicySpec | RequestAuthenticationSpec):
            _check_policy_targets(f, r, r.spec.target_ref, r.spec.target_refs, index)
        found += f.items
    return found


def _build_index(resources: Iterable[Resource], suffix: str) -> _Index:
    resources = list(resources)
    namespaces = frozenset(r.namespace for r in resources)
    hosts: set[str] = set()
    wildcards: list[str] = []
    subsets: dict[str, set[str]] = {}
    gateways: set[tuple[str, str]] = set()
    secrets: set[tuple[str, str]] = set()
    services: set[tuple[str, str]] = set()
    for r in resources:
        spec = r.spec
        if r.kind == "Secret":
            secrets.add((r.namespace, r.name))
        if isinstance(spec, ServiceSpec):
            services.add((r.namespace, r.name))
            hosts.add(f"{r.name}.{r.namespace}.svc.{suffix}")
        elif isinstance(spec, ServiceEntrySpec):
            for host in spec.hosts:
                if host.startswith("*."):
                    wildcards.append(host[1:].lower())
                else:
                    hosts.add(fqdn(host, r.namespace, suffix, known_namespaces=namespaces))
        elif isinstance(spec, DestinationRuleSpec):
            key = fqdn(spec.host, r.namespace, suffix, known_namespaces=namespaces)
            subsets.setdefault(key, set()).update(s.name for s in spec.subsets)
        elif r.kind == "Gateway":
            gateways.add((r.namespace, r.name))
    return _Index(
        frozenset(hosts),
        tuple(wildcards),
        subsets,
        frozenset(gateways),
        namespaces,
        suffix,
        frozenset(secrets),
        frozenset(services),
        PodIndex(resources),
    )


def _destinations(spec: VirtualServiceSpec) -> Iterable[tuple[str, Destination]]:
    for i, http in enumerate(spec.http):
        for j, hd in enumerate(http.route):
            yield f"spec.http[{i}].route[{j}].destination", hd.destination
        if http.mirror is not None:
            yield f"spec.http[{i}].mirror", http.mirror
        for j, mirror in enumerate(http.mirrors):
            yield f"spec.http[{i}].mirrors[{j}].destination", mirror.destination
    for i, tcp in enumerate(spec.tcp):
        for j, rd in enumerate(tcp.route):
            yield f"spec.tcp[{i}].route[{j}].destination", rd.destination
    for i, tls in enumerate(spec.tls):
        for j, rd in enumerate(tls.route):
            yield f"spec.tls[{i}].route[{j}].destination", rd.destination


def _check_virtual_service(
    f: Findings, r: Resource, spec: VirtualServiceSpec, index: _Index
) -> None:
    for path, dest in _destinations(spec):
        name = index.resolve(dest.host, r.namespace)
        if not index.has_host(name):
            f.warning(
                f"{path}.host", f"host {name!r} matches no Service or ServiceEntry", "IST0101"
            )
        if dest.subset and dest.subset not in index.subsets_for(name):
            f.warning(
                f"{path}.subset",
                f"subset {dest.subset!r} is not defined by any DestinationRule for {name!r}",
                "IST0101",
            )
    refs: list[tuple[str, str]] = [(f"spec.gateways[{i}]", g) for i, g in enumerate(spec.gateways)]
    for i, http in enumerate(spec.http):
        for j, match in enumerate(http.match):
            refs += [
                (f"spec.http[{i}].match[{j}].gateways[{k}]", g)
                for k, g in enumerate(match.gateways)
            ]
    for path, ref in refs:
        if ref == "mesh":
            continue
        key = gateway_key(ref, r.namespace)
        if key not in index.gateways:
            f.warning(path, f"gateway {key[0]}/{key[1]} does not exist", "IST0101")


def gateway_key(ref: str, namespace: str) -> tuple[str, str]:
    """``ns/name``, a short name (same namespace) or a legacy ``name.ns.svc...`` FQDN."""
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return ns, name
    labels = ref.split(".")
    if len(labels) >= 2:
        return labels[1], labels[0]
    return namespace, ref


def _workload_namespaces(r: Resource, spec: GatewaySpec, index: _Index) -> list[str]:
    """Where the Gateway's workload runs: the namespaces of the pods it selects."""
    selected = index.pods.selected(spec.selector, None) if index.pods and spec.selector else []
    return sorted({p.namespace for p in selected}) or [r.namespace]


def _check_gateway_credentials(f: Findings, r: Resource, spec: GatewaySpec, index: _Index) -> None:
    namespaces = _workload_namespaces(r, spec, index)
    for i, server in enumerate(spec.servers):
        tls = server.tls
        if tls is None:
            continue
        names = [(f"spec.servers[{i}].tls.credentialName", tls.credential_name or "")]
        names += [
            (f"spec.servers[{i}].tls.credentialNames[{j}]", name)
            for j, name in enumerate(tls.credential_names)
        ]
        for path, name in names:
            if name and not any((ns, name) in index.secrets for ns in namespaces):
                where = " or ".join(f"{ns}/{name}" for ns in namespaces)
                f.warning(path, f"Secret {where} does not exist", "IST0101")


def _check_policy_targets(
    f: Findings,
    r: Resource,
    target_ref: PolicyTargetReference | None,
    target_refs: Sequence[PolicyTargetReference],
    index: _Index,
) -> None:
    refs = [("spec.targetRef", target_ref)] if target_ref is not None else []
    refs += [(f"spec.targetRefs[{i}]", ref) for i, ref in enumerate(target_refs)]
    for path, ref in refs:
        key = (ref.namespace or r.namespace, ref.name)
        known = {"Service": index.services, "Gateway": index.gateways}.get(ref.kind)
        if known is not None and ref.name and key not in known:
            f.warning(f"{path}.name", f"{ref.kind} {key[0]}/{key[1]} does not exist", "IST0101")
