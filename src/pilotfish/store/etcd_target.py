"""Which etcd, and where in it: endpoints, client TLS files and the key prefix.

Parsed and checked without I/O or heavy imports, so that the command line can
check ``--config-store`` and friends, and runtime settings can hold them,
without loading the store itself (``etcd_client`` speaks to etcd).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "Endpoints", "EtcdTls", "host_in_url", "parse_endpoints"]

#: Where configuration lives in etcd, as Kubernetes keeps it (``etcd_keys``).
DEFAULT_PREFIX = "/registry"

_SCHEMES = {"etcd": False, "etcds": True}


@dataclass(frozen=True, slots=True)
class EtcdTls:
    """Client TLS for ``etcds://``: the CA to verify etcd with, and our certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where etcd listens: ``(host, port)`` pairs, and whether to speak TLS."""

    hosts: tuple[tuple[str, int], ...]
    tls: bool = False

    def urls(self) -> list[str]:
        scheme = "https" if self.tls else "http"
        return [f"{scheme}://{host_in_url(h)}:{p}" for h, p in self.hosts]

    def __str__(self) -> str:
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(f"{host_in_url(h)}:{p}" for h, p in self.hosts)


def host_in_url(host: str) -> str:
    """An IPv6 address in brackets, as URLs and ``HOST:PORT`` need it."""
    return f"[{host}]" if ":" in host else host


def parse_endpoints(text: str) -> Endpoints:
    """``etcd://HOST:PORT[,HOST:PORT...]`` or ``etcds://...``; ValueError saying why not."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in _SCHEMES:
        raise ValueError(
            f"{text!r}: an etcd store is etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS)"
        )
    hosts: list[tuple[str, int]] = []
    for part in rest.rstrip("/").split(","):
        host, colon, port_text = part.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: {part!r} is not HOST:PORT")
        hosts.append((host, int(port_text)))
    return Endpoints(tuple(hosts), _SCHEMES[scheme])
