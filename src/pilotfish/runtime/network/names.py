"""Service names inside pods: per-netns ``hosts`` and ``resolv.conf`` files.

Theory of operation: ``ip netns exec <netns>`` bind-mounts every file of
``/etc/netns/<netns>/`` over the same name in ``/etc`` for the command it
runs. Pilotfish writes a ``hosts`` file listing each service VIP under its
FQDN and the short forms Kubernetes DNS would answer (``name.ns``,
``name.ns.svc``, and the bare ``name`` for services in the pod's own
namespace), plus a ``resolv.conf`` whose only nameserver is 127.0.0.1 where
nothing listens: unknown names fail fast and no DNS query leaves the machine.

Because the files are bind-mounted into running processes' mount namespaces,
updates rewrite them in place (same inode); replacing them by rename would
leave every running process with the old content.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from .base import ServiceName

__all__ = ["NETNS_ETC", "hosts_file", "resolv_conf", "write_in_place"]

# Where ``ip netns exec`` looks for per-namespace configuration files.
NETNS_ETC = Path("/etc/netns")

_LOCALHOST_LINES = (
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
)


def _aliases(service: ServiceName, namespace: str, cluster_domain: str) -> list[str]:
    """Names for ``service`` as seen from a pod in ``namespace``, FQDN first."""
    fqdn = service.hostname.rstrip(".")
    names = [fqdn]
    suffix = f".{service.namespace}.svc.{cluster_domain}"
    if fqdn.endswith(suffix) and "." not in fqdn[: -len(suffix)]:
        short = fqdn[: -len(suffix)]
        names += [f"{short}.{service.namespace}", f"{short}.{service.namespace}.svc"]
        if service.namespace == namespace:
            names.append(short)
    return names


def hosts_file(
    names: Iterable[ServiceName],
    namespace: str | None,
    *,
    cluster_domain: str = "cluster.local",
) -> str:
    """The ``hosts`` content for a pod in ``namespace`` (None: no bare short names).

    Services are listed sorted by FQDN; a hostname listed twice keeps the
    lowest VIP. A malformed VIP raises ``ValueError``.
    """
    lines = list(_LOCALHOST_LINES)
    seen: set[str] = set()
    for service in sorted(names, key=lambda s: (s.hostname, s.vip)):
        if service.hostname in seen:
            continue
        seen.add(service.hostname)
        ipaddress.ip_address(service.vip)  # a malformed VIP must not corrupt the file
        aliases = _aliases(service, namespace or "", cluster_domain)
        lines.append(f"{service.vip}\t{' '.join(aliases)}")
    return "\n".join(lines) + "\n"


def resolv_conf(namespace: str | None, *, cluster_domain: str = "cluster.local") -> str:
    """The ``resolv.conf`` for a pod in ``namespace``: Kubernetes search list, dead resolver."""
    search = [f"svc.{cluster_domain}", cluster_domain]
    if namespace:
        search.insert(0, f"{namespace}.svc.{cluster_domain}")
    return (
        "# Written by pilotfish: service names come from the hosts file; nothing listens\n"
        "# on 127.0.0.1:53, so unknown names fail fast and no query leaves the machine.\n"
        f"search {' '.join(search)}\n"
        "nameserver 127.0.0.1\n"
        "options ndots:5\n"
    )


def write_in_place(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` keeping its inode (create it when missing).

    Bind mounts of ``path`` see the new content at once. Readers may observe
    a partially written file for an instant; resolvers re-read on next lookup.
    """
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.truncate()
