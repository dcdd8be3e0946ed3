"""Semantic checks of a WorkloadEntry (also used for ServiceEntry endpoints)."""

from __future__ import annotations

from collections.abc import Set

from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.workload_entry import WorkloadEntrySpec
from pilotfish.api.resource import Resource
from pilotfish.api.validation import checks
from pilotfish.api.validation.findings import Findings

__all__ = ["check_workload", "validate"]

UNIX_PREFIX = "unix://"


def validate(resource: Resource) -> list[Diagnostic]:
    spec = resource.spec
    assert isinstance(spec, WorkloadEntrySpec)
    f = Findings(resource)
    check_workload(f, spec, "spec", allow_hostname=True, port_names=None)
    if spec.service_account:
        f.add(
            "spec.serviceAccount",
            checks.check_dns1123_subdomain(spec.service_account, "service account"),
        )
    return f.items


def check_workload(
    f: Findings,
    we: WorkloadEntrySpec,
    path: str,
    *,
    allow_hostname: bool,
    port_names: Set[str] | None,
) -> None:
    """Address, ports, labels and weight of one workload.

    ``allow_hostname``: a DNS name is a valid address (DNS resolution);
    otherwise it must be an IP address or ``unix://`` socket.
    ``port_names``: when given (ServiceEntry endpoints), every port name must
    be one of the service's port names.
    """
    address = we.address or ""
    if not address:
        if we.network:
            f.warning(f"{path}.address", f"address is unset (network {we.network!r})")
        else:
            f.error(f"{path}.address", "address is required")
    elif address.startswith(UNIX_PREFIX):
        if not address[len(UNIX_PREFIX) :]:
            f.error(f"{path}.address", "unix socket path is empty")
        if we.ports:
            f.error(f"{path}.ports", "a unix socket endpoint takes no ports")
    elif checks.check_cidr_or_ip(address) is not None or "/" in address:
        if not allow_hostname:
            f.error(f"{path}.address", f"{address!r} is not an IP address")
        elif checks.check_host(address, allow_wildcard=False) is not None:
            f.error(f"{path}.address", f"{address!r} is not an IP address or DNS name")
    for name, port in we.ports.items():
        pp = f"{path}.ports.{name}"
        f.add(pp, checks.check_dns1123_label(name, "port name"))
        f.add(pp, checks.check_port(port))
        if port_names is not None and name not in port_names:
            f.error(pp, f"port name {name!r} is not a port of the ServiceEntry")
    for p, msg in checks.label_problems(we.labels, f"{path}.labels"):
        f.error(p, msg)
    if we.weight is not None and we.weight < 0:
        f.error(f"{path}.weight", "weight must not be negative")
