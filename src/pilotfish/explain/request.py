"""The request being explained: a URL, a method and headers, as Envoy would see them.

A request is described the way a user types it (``http://reviews:9080/a?b=1``);
this module derives what Envoy's matchers read from it: ``:authority`` (the
URL's host and, when given, its port, exactly as an HTTP client writes the Host
header), ``:path`` without the query string (route and RBAC path matching never
see the query), the query parameters, ``:method`` and ``:scheme``. Header names
are lower case, as HTTP/2 and Envoy's header map have them; a repeated header
is joined with ``,`` (Envoy's HeaderMatcher compares the joined value).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

__all__ = ["ExplainRequest", "RequestError", "parse_header"]


class RequestError(ValueError):
    """The URL or a header cannot be understood; the message says why."""


def parse_header(text: str) -> tuple[str, str]:
    """``"k: v"`` (curl's ``-H`` form) as (lower-case name, value); pseudo-headers
    keep their colon (``":scheme: https"``)."""
    pseudo = text.startswith(":")
    name, sep, value = (text[1:] if pseudo else text).partition(":")
    if not sep or not name.strip():
        raise RequestError(f"header {text!r} is not of the form 'name: value'")
    return (":" if pseudo else "") + name.strip().lower(), value.strip()


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    # Derived from ``url`` in ``__post_init__``.
    scheme: str = field(init=False, default="http")
    host: str = field(init=False, default="")
    port: int = field(init=False, default=80)
    path: str = field(init=False, default="/")
    query: tuple[tuple[str, str], ...] = field(init=False, default=())
    raw_query: str = field(init=False, default="")
    authority: str = field(init=False, default="")

    def __post_init__(self) -> None:
        url = self.url if "://" in self.url else f"http://{self.url}"
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "tcp"):
            raise RequestError(
                f"{self.url!r}: only http://, https:// and tcp:// URLs are explained"
            )
        if not parts.hostname:
            raise RequestError(f"{self.url!r} has no host")
        try:
            explicit_port = parts.port
        except ValueError as exc:
            raise RequestError(f"{self.url!r}: {exc}") from None
        default_port = 443 if parts.scheme == "https" else 80
        netloc_host = parts.netloc.rpartition("@")[2]
        set_ = object.__setattr__
        set_(self, "scheme", parts.scheme)
        set_(self, "host", parts.hostname.lower())
        set_(self, "port", explicit_port or default_port)
        set_(self, "path", parts.path or "/")
        set_(self, "query", tuple(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)))
        set_(self, "raw_query", parts.query)
        set_(self, "authority", self.header(":authority") or netloc_host.lower())
        set_(self, "method", self.method.upper())

    def header(self, name: str) -> str | None:
        """The value Envoy's header matchers compare for ``name`` (None: absent)."""
        name = name.lower()
        if name in (":authority", "host"):
            found = self._own("host") or self._own(":authority")
            return found if found is not None else (self.authority or None)
        if name == ":method":
            return self.method
        if name == ":scheme":
            # What the client's proxy saw; a sidecar's HTTP listener sees plain http
            # unless told otherwise (``-H ':scheme: https'``).
            return self._own(":scheme") or self.scheme
        if name == ":path":
            return self.path + (f"?{self.raw_query}" if self.raw_query else "")
        return self._own(name)

    def _own(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name]
        return ",".join(values) if values else None

    def query_param(self, name: str) -> str | None:
        # Envoy keeps the first occurrence of a repeated parameter.
        for k, v in self.query:
            if k == name:
                return v
        return None

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "method": self.method,
            "authority": self.authority,
            "path": self.path,
            "query": [list(q) for q in self.query],
            "headers": [list(h) for h in self.headers],
        }
