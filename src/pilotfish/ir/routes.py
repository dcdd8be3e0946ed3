"""IR for HTTP routing: route configurations, virtual hosts, routes.

Plain frozen data in mesh terms, free of protobuf. Durations are integer
milliseconds; ``None`` means "not set" (Envoy's default applies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pilotfish.ir.security import RoutePolicy

__all__ = [
    "CorsPolicy",
    "DirectResponseAction",
    "FaultPolicy",
    "ForwardAction",
    "HashPolicy",
    "HeaderMatch",
    "HeaderOps",
    "MirrorPolicy",
    "QueryParamMatch",
    "RedirectAction",
    "RetryPolicy",
    "Route",
    "RouteAction",
    "RouteConfig",
    "RouteMatch",
    "StringMatch",
    "VirtualHost",
    "WeightedCluster",
]


@dataclass(frozen=True, slots=True)
class StringMatch:
    kind: Literal["exact", "prefix", "regex"]
    value: str
    ignore_case: bool = False


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """Match on a header; ``match=None`` means "present". Pseudo-headers
    (``:authority``, ``:method``, ``:scheme``) carry authority/method/scheme matches."""

    name: str
    match: StringMatch | None = None
    invert: bool = False  # withoutHeaders: the route matches when this does not


@dataclass(frozen=True, slots=True)
class QueryParamMatch:
    """Match on a query parameter; ``match=None`` means "present"."""

    name: str
    match: StringMatch | None = None


@dataclass(frozen=True, slots=True)
class ClaimMatch:
    """Match on a claim of the verified JWT (``@request.auth.claims.a.b``): ``claims``
    is the path into its payload; ``match=None`` means "present". The claim may be
    a string or a list holding a matching string, as Istio matches it."""

    claims: tuple[str, ...]
    match: StringMatch | None = None
    invert: bool = False  # withoutHeaders: the route matches when this does not


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path: StringMatch = StringMatch("prefix", "/")
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    claims: tuple[ClaimMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class HeaderOps:
    """Header manipulation: ``set`` overwrites, ``add`` appends, ``remove`` deletes."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True, slots=True)
class WeightedCluster:
    cluster: str
    weight: int
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    retry_on: str  # Envoy's comma-separated retry_on string
    per_try_timeout_ms: int | None = None
    retriable_status_codes: tuple[int, ...] = ()
    backoff_base_ms: int | None = None  # base interval of Envoy's retry back-off
    # Prefer retrying in other localities (Envoy's previous_priorities retry priority).
    remote_localities: bool = False
    # Pick another endpoint for each retry (previous_hosts). An inbound route has one
    # endpoint, the local app, so its retries go back to it.
    avoid_previous_hosts: bool = True


@dataclass(frozen=True, slots=True)
class MirrorPolicy:
    """Copy requests to ``cluster`` (fire and forget; the caller sees only the primary's
    answer). Envoy appends ``-shadow`` to the mirrored request's Host."""

    cluster: str
    percent: float = 100.0  # share of requests mirrored, 0.0..100.0


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """Fault injection on a route. A part whose percentage is ``None`` is absent.

    ``abort_http_status`` and ``abort_grpc_status`` are alternatives (one is set
    when ``abort_percent`` is)."""

    delay_ms: int | None = None
    delay_percent: float | None = None
    abort_http_status: int | None = None
    abort_grpc_status: int | None = None
    abort_percent: float | None = None


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Cross-origin resource sharing on a route. ``max_age_s`` is whole seconds;
    ``forward_unmatched_preflights`` passes preflights from origins that do not
    match on to the upstream instead of answering them locally."""

    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_s: int | None = None
    allow_credentials: bool | None = None
    forward_unmatched_preflights: bool = True


@dataclass(frozen=True, slots=True)
class HashPolicy:
    """One consistent-hash input; exactly one field is set."""

    header: str | None = None
    cookie_name: str | None = None
    cookie_ttl_ms: int | None = None
    cookie_path: str | None = None
    source_ip: bool = False
    query_param: str | None = None


@dataclass(frozen=True, slots=True)
class ForwardAction:
    """Send to one or more weighted clusters."""

    clusters: tuple[WeightedCluster, ...]
    timeout_ms: int | None = None  # 0 disables the timeout, as Istio's default
    retry: RetryPolicy | None = None
    prefix_rewrite: str | None = None  # replaces the matched prefix (uri rewrite on prefix match)
    path_rewrite: str | None = None  # replaces the whole path (uri rewrite on exact/regex match)
    host_rewrite: str | None = None
    hash_policies: tuple[HashPolicy, ...] = ()
    mirrors: tuple[MirrorPolicy, ...] = ()
    # Status for requests whose cluster does not exist (Envoy's default is 503);
    # Gateway API routes answer 500 for the share of an invalid backend.
    missing_cluster_status: int | None = None


@dataclass(frozen=True, slots=True)
class RedirectAction:
    path: str | None = None
    prefix: str | None = None  # replaces the matched prefix only
    host: str | None = None
    port: int | None = None
    scheme: str | None = None
    response_code: int = 301


@dataclass(frozen=True, slots=True)
class DirectResponseAction:
    status: int
    body: str | None = None


RouteAction = ForwardAction | RedirectAction | DirectResponseAction


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    match: RouteMatch
    action: RouteAction
    request_headers: HeaderOps = HeaderOps()
    response_headers: HeaderOps = HeaderOps()
    # Per-route settings of the HTTP connection manager's fault and CORS filters.
    fault: FaultPolicy | None = None
    cors: CorsPolicy | None = None


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    require_tls: bool = False  # redirect plain HTTP to HTTPS (Gateway httpsRedirect)
    # The workload's JWT and authorization policy for these routes (None: none).
    policy: RoutePolicy | None = None


@dataclass(frozen=True, slots=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]
