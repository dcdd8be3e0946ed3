"""IR for mesh security: TLS on both sides of a connection, authorization, JWT.

Certificates of the workload itself are never in the IR: they are named by
SDS secret (``default`` for the workload certificate and key, ``ROOTCA`` for
the mesh root), which the proxy's agent serves locally. Certificates the user
supplies (DestinationRule SIMPLE/MUTUAL files, Gateway ``credentialName``)
appear as file paths or inline PEM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SDS_ROOT_CA",
    "SDS_WORKLOAD_CERT",
    "AuthzMatch",
    "AuthzPolicy",
    "AuthzRule",
    "CertSource",
    "DownstreamTls",
    "JwtAuthn",
    "JwtHeader",
    "JwtProvider",
    "UpstreamTls",
]

SDS_WORKLOAD_CERT = "default"
SDS_ROOT_CA = "ROOTCA"


@dataclass(frozen=True, slots=True)
class CertSource:
    """Where a certificate (chain + key, or a CA bundle) comes from: exactly one of
    an SDS secret name served by the proxy's agent, files, or inline PEM."""

    sds: str = ""
    cert_file: str = ""
    key_file: str = ""
    cert_pem: str = ""
    key_pem: str = ""  # sensitive: never logged or shown by debug endpoints


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """TLS a proxy originates to an upstream (cluster side).

    ``mode``: ``ISTIO_MUTUAL`` (workload cert from SDS, mesh root, SPIFFE SAN
    check), ``MUTUAL`` / ``SIMPLE`` (user-supplied certs).
    """

    mode: Literal["ISTIO_MUTUAL", "MUTUAL", "SIMPLE"]
    client_cert: CertSource | None = None
    trusted_ca: CertSource | None = None
    subject_alt_names: tuple[str, ...] = ()  # exact SANs (SPIFFE URIs or DNS names)
    sni: str = ""
    alpn: tuple[str, ...] = ()
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class DownstreamTls:
    """TLS a listener terminates (inbound mTLS, gateway HTTPS)."""

    server_cert: CertSource
    trusted_ca: CertSource | None = None  # set: client certificates are verified
    require_client_cert: bool = False
    alpn: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()  # accepted client SANs (empty: any)
    min_version: str = ""  # "TLSv1_2", ...
    max_version: str = ""


@dataclass(frozen=True, slots=True)
class AuthzMatch:
    """One condition of an authorization rule.

    ``field`` names what is compared (Istio's attribute names):
    ``source.principal``, ``request.auth.principal``, ``source.namespace``,
    ``source.ip``, ``remote.ip``, ``request.host``, ``destination.port``,
    ``request.method``, ``request.path``, ``request.headers`` (``key`` = header),
    ``request.auth.claims`` (``key`` = claim, nested claims as ``a.b``),
    ``request.auth.audiences``, ``request.auth.presenter``,
    ``destination.ip``. ``values`` are ORed and use Istio's string rules
    (exact, ``prefix*``, ``*suffix``, ``*`` = present). ``negate`` makes it a
    ``not`` form (matches when none of the values match).
    """

    field: str
    values: tuple[str, ...]
    key: str = ""
    negate: bool = False


@dataclass(frozen=True, slots=True)
class AuthzRule:
    """One Istio rule: any source set AND any operation set AND every condition.

    ``sources`` and ``operations`` are ORs of ANDed matches; an empty tuple
    means "any".
    """

    sources: tuple[tuple[AuthzMatch, ...], ...] = ()
    operations: tuple[tuple[AuthzMatch, ...], ...] = ()
    conditions: tuple[AuthzMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthzPolicy:
    """An AuthorizationPolicy as it applies to one proxy (and one port)."""

    name: str  # "<namespace>/<name>"
    action: Literal["ALLOW", "DENY", "AUDIT"]
    rules: tuple[AuthzRule, ...]  # no rules: ALLOW matches nothing, DENY nothing


@dataclass(frozen=True, slots=True)
class JwtHeader:
    name: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class JwtProvider:
    name: str
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks: str = ""  # inline JWKS JSON (the control plane fetches jwksUri)
    from_headers: tuple[JwtHeader, ...] = ()
    from_params: tuple[str, ...] = ()
    forward: bool = False
    output_payload_to_header: str = ""


@dataclass(frozen=True, slots=True)
class JwtAuthn:
    """RequestAuthentication for one proxy: a token, if present, must be valid for
    one of the providers (401 otherwise); a request without one passes."""

    providers: tuple[JwtProvider, ...]
