"""The conformance echo's answer: upstream echo-basic's JSON, whichever protocol asked.

Shared by the HTTP/1.1 server (``conformance_echo``) and the h2c listener
(``conformance_echo_h2c``): the request as echo-basic describes it, header
names as Go spells them, and the response headers a request asks for with
``X-Echo-Set-Header``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Exchange", "canonical_header", "describe_exchange", "echo_set_headers"]


def canonical_header(name: str) -> str:
    """``name`` as Go's ``textproto.CanonicalMIMEHeaderKey`` spells it (``x-foo`` -> ``X-Foo``)."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass(frozen=True)
class Exchange:
    """What the echo JSON says of one request, whichever protocol carried it."""

    path: str  # the request target as received (path and query)
    host: str
    method: str
    proto: str  # as Go prints it: HTTP/1.1, HTTP/2.0
    headers: tuple[tuple[str, str], ...]


def describe_exchange(exchange: Exchange, env: dict[str, str]) -> dict[str, Any]:
    """The echo-basic JSON (without ``tls``) for ``exchange``, with identity from ``env``."""
    headers: dict[str, list[str]] = {}
    for key, value in exchange.headers:
        headers.setdefault(canonical_header(key), []).append(value)
    # Go's server moves Host out of the header map into Request.Host.
    headers.pop("Host", None)
    return {
        "path": exchange.path,
        "host": exchange.host,
        "method": exchange.method,
        "proto": exchange.proto,
        "headers": headers,
        "namespace": env.get("NAMESPACE") or env.get("POD_NAMESPACE", ""),
        "ingress": env.get("INGRESS_NAME", ""),
        "service": env.get("SERVICE_NAME", ""),
        "pod": env.get("POD_NAME", ""),
    }


def echo_set_headers(values: list[str]) -> dict[str, str]:
    """Response headers asked for with ``X-Echo-Set-Header: A: 1, B: 2`` (its values)."""
    out: dict[str, str] = {}
    for raw in values:
        for item in raw.split(","):
            name, sep, value = item.partition(":")
            if sep and name.strip():
                out[name.strip()] = value.strip()
    return out
