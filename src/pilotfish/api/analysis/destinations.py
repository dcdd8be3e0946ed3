"""VirtualService destination analyzers (Istio's ``virtualservice/destinationhosts.go``).

- IST0112 VirtualServiceDestinationPortSelectorRequired: a route destination
  without ``port`` whose host is a Service or ServiceEntry with more than one
  port: which port is meant is ambiguous.
- IST0140 IngressRouteRulesNotAffected: a VirtualService bound to a gateway
  routes to a host without subset while another VirtualService of that host
  routes it by subset: the subset routing (a sidecar's) does not apply to the
  gateway's requests. Hosts are compared as written, as Istio does.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.common import Destination
from pilotfish.api.networking.service_entry import ServiceEntrySpec
from pilotfish.api.networking.virtual_service import VirtualServiceSpec
from pilotfish.model.hosts import fqdn

__all__ = ["CODES", "check_destinations"]

CODES = ("IST0112", "IST0140")


def _route_destinations(spec: VirtualServiceSpec) -> Iterator[tuple[str, Destination]]:
    for i, http in enumerate(spec.http):
        for j, hd in enumerate(http.route):
            yield f"spec.http[{i}].route[{j}].destination", hd.destination
    for i, tcp in enumerate(spec.tcp):
        for j, rd in enumerate(tcp.route):
            yield f"spec.tcp[{i}].route[{j}].destination", rd.destination
    for i, tls in enumerate(spec.tls):
        for j, rd in enumerate(tls.route):
            yield f"spec.tls[{i}].route[{j}].destination", rd.destination


def check_destinations(ctx: AnalysisContext) -> list[Diagnostic]:
    suffix = ctx.domain_suffix
    ports: dict[str, list[int]] = {}
    for r, svc in ctx.of(ServiceSpec):
        ports[f"{r.name}.{r.namespace}.svc.{suffix}"] = [p.port for p in svc.ports]
    for r, se in ctx.of(ServiceEntrySpec):
        for host in se.hosts:
            ports.setdefault(fqdn(host, r.namespace, suffix), [p.number for p in se.ports])
    services = ctx.of(VirtualServiceSpec)
    found: list[Diagnostic] = []
    for r, spec in services:
        for path, dest in _route_destinations(spec):
            known = ports.get(fqdn(dest.host, r.namespace, suffix), [])
            if dest.port is None and len(known) > 1:
                found.append(
                    report(
                        r,
                        f"{path}.host",
                        "IST0112",
                        f"{dest.host} has several ports ({', '.join(map(str, known))}): "
                        "give destination.port",
                    )
                )
    by_subset = {
        (r.namespace, r.name): {
            hd.destination.host
            for http in spec.http
            for hd in http.route
            if hd.destination.subset and hd.destination.host in spec.hosts
        }
        for r, spec in services
    }
    for r, spec in services:
        if not spec.gateways:
            continue
        for i, http in enumerate(spec.http):
            for j, hd in enumerate(http.route):
                if hd.destination.subset:
                    continue
                for (ns, name), hosts in sorted(by_subset.items()):
                    if hd.destination.host in hosts:
                        found.append(
                            report(
                                r,
                                f"spec.http[{i}].route[{j}].destination.host",
                                "IST0140",
                                f"VirtualService {ns}/{name} routes {hd.destination.host} by "
                                "subset, which does not apply to this gateway's requests: give "
                                "a subset here",
                            )
                        )
    return found
