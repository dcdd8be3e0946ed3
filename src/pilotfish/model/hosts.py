"""Host names: how a name written in configuration becomes a service FQDN.

Kubernetes services are named ``<name>.<namespace>.svc.<domain suffix>``.
Configuration may name them by a shorter form, which is resolved relative to
the namespace of the resource that names it (not the namespace of the
service), the way Istio does:

- ``reviews`` -> ``reviews.<namespace>.svc.cluster.local``
- ``reviews.prod`` -> ``reviews.prod.svc.cluster.local``
- ``reviews.prod.svc`` -> ``reviews.prod.svc.cluster.local``
- ``reviews.prod.svc.cluster.local``, ``api.example.com``, ``*``,
  ``*.example.com`` and IP addresses stay as written.

A two-label name (``a.b``) is ambiguous: ``reviews.prod`` is a service in
namespace ``prod`` but ``example.com`` is an external host. When the caller
knows the namespaces that exist it passes them (``known_namespaces``);
otherwise a name whose last label is a well-known public top-level domain is
treated as external.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Collection

__all__ = ["fqdn", "is_ip_address", "is_wildcard", "short_names"]

DEFAULT_DOMAIN_SUFFIX = "cluster.local"

# Used only when the caller cannot say which namespaces exist.
_PUBLIC_TLDS = frozenset(
    {
        "com",
        "net",
        "org",
        "io",
        "dev",
        "app",
        "edu",
        "gov",
        "mil",
        "int",
        "info",
        "biz",
        "cloud",
        "ai",
        "co",
        "us",
        "uk",
        "de",
        "fr",
        "nl",
        "jp",
        "cn",
        "in",
        "au",
        "ca",
        "eu",
        "ru",
        "br",
        "es",
        "it",
        "ch",
        "se",
        "me",
        "tv",
        "xyz",
        "local",
        "internal",
        "localhost",
        "test",
        "example",
        "invalid",
    }
)


@functools.lru_cache(maxsize=65536)
def is_ip_address(host: str) -> bool:
    """True for an IPv4 or IPv6 address (without brackets or port).

    Cached: every host of every rule is resolved on each configuration change,
    and ``ip_address`` learns that a name is not an address by raising twice
    (IPv4, then IPv6), about 60 ms per change at 1000 services."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_wildcard(host: str) -> bool:
    """True for ``*`` and ``*.example.com`` style hosts."""
    return host == "*" or host.startswith("*.")


def fqdn(
    host: str,
    namespace: str,
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX,
    *,
    known_namespaces: Collection[str] | None = None,
) -> str:
    """Resolve a host as written in a resource of ``namespace`` to its FQDN.

    The result is lower case: DNS names are case-insensitive and one spelling
    keeps lookups simple. A trailing dot is removed.
    """
    h = host.strip().rstrip(".").lower()
    suffix = domain_suffix.strip(".").lower()
    if not h or is_wildcard(h) or is_ip_address(h):
        return h
    if h == suffix or h.endswith("." + suffix):
        return h
    labels = h.split(".")
    if len(labels) == 1:
        return f"{h}.{namespace}.svc.{suffix}"
    if len(labels) == 3 and labels[2] == "svc":
        return f"{h}.{suffix}"
    if len(labels) == 2:
        if known_namespaces is not None:
            is_service = labels[1] in known_namespaces
        else:
            is_service = labels[1] not in _PUBLIC_TLDS
        if is_service:
            return f"{h}.svc.{suffix}"
    return h


def short_names(
    service_fqdn: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> tuple[str, ...]:
    """The names a client in ``namespace`` may use for a service FQDN, shortest first.

    For ``reviews.default.svc.cluster.local``: a client in ``default`` may say
    ``reviews``, ``reviews.default``, ``reviews.default.svc`` or the full name;
    a client elsewhere may not use the bare ``reviews`` (it would mean a
    service of its own namespace). A name that is not a Kubernetes service
    FQDN has only itself.
    """
    full = service_fqdn.rstrip(".").lower()
    suffix = "." + domain_suffix.strip(".").lower()
    if not full.endswith(suffix):
        return (full,)
    labels = full[: -len(suffix)].split(".")
    if len(labels) != 3 or labels[2] != "svc":
        return (full,)
    name, svc_namespace = labels[0], labels[1]
    names: list[str] = []
    if svc_namespace == namespace:
        names.append(name)
    names += [f"{name}.{svc_namespace}", f"{name}.{svc_namespace}.svc", full]
    return tuple(names)
