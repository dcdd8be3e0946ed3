"""IR for mesh security: TLS on both sides of a connection, authorization, JWT.

Certificates of the workload itself are never in the IR: they are named by
SDS secret (``default`` for the workload certificate and key, ``ROOTCA`` for
the mesh root), which the proxy's agent serves locally. Certificates the user
supplies appear as file paths (``serverCertificate``, ``clientCertificate``...)
or, for a ``credentialName`` Secret, as the name of an SDS resource the
control plane serves on the proxy's own ADS stream (``CredentialSecret``):
key material never sits in a listener or cluster.

Credential resource names follow Istio's explicit-namespace form,
``kubernetes://<namespace>/<name>`` for a certificate and key and
``kubernetes://<namespace>/<name>-cacert`` for its CA bundle. Pilotfish always
writes the namespace, even where Istio leaves it implicit: the name alone then
says whose Secret it is, and the xDS server authorizes a request from the
name and the stream's verified identity, with no side table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pilotfish.sds_names import SDS_ROOT_CA, SDS_WORKLOAD_CERT

__all__ = [
    "CREDENTIAL_PREFIX",
    "SDS_ROOT_CA",
    "SDS_WORKLOAD_CERT",
    "AuthzMatch",
    "AuthzPolicy",
    "AuthzRule",
    "CertSource",
    "CredentialSecret",
    "DownstreamTls",
    "JwtAuthn",
    "JwtHeader",
    "JwtProvider",
    "RoutePolicy",
    "UpstreamTls",
    "credential_ca_name",
    "credential_name",
    "credential_namespace",
]

CREDENTIAL_PREFIX = "kubernetes://"
CA_SUFFIX = "-cacert"


def credential_name(namespace: str, name: str) -> str:
    """The SDS resource of Secret ``namespace/name``'s certificate and key."""
    return f"{CREDENTIAL_PREFIX}{namespace}/{name}"


def credential_ca_name(namespace: str, name: str) -> str:
    """The SDS resource of the CA bundle that goes with Secret ``namespace/name``."""
    return f"{CREDENTIAL_PREFIX}{namespace}/{name}{CA_SUFFIX}"


def credential_namespace(resource_name: str) -> str | None:
    """The namespace a credential resource name belongs to; None when the name is
    not of the ``kubernetes://<namespace>/<name>`` form."""
    if not resource_name.startswith(CREDENTIAL_PREFIX):
        return None
    namespace, sep, name = resource_name[len(CREDENTIAL_PREFIX) :].partition("/")
    if not (sep and namespace and name) or "/" in name:
        return None
    return namespace


@dataclass(frozen=True, slots=True)
class CertSource:
    """Where a certificate (chain + key, or a CA bundle) comes from: exactly one of
    an SDS secret served by the proxy's agent (``sds``), a credential the control
    plane serves over ADS (``credential``: a resource name from
    ``credential_name``/``credential_ca_name``), or files."""

    sds: str = ""
    credential: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True, slots=True)
class CredentialSecret:
    """The contents of one credential SDS resource: a certificate chain and its
    key, or (``ca_pem``) a CA bundle. Sensitive: never logged; debug output shows
    it only through ``pilotfish.ir.dump.redact``."""

    name: str  # credential_name(...) or credential_ca_name(...)
    cert_pem: str = ""
    key_pem: str = field(default="", repr=False)
    ca_pem: str = ""


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
    # A client certificate that does not verify is let through (with
    # ``require_client_cert`` False: the Gateway API's AllowInsecureFallback).
    accept_untrusted: bool = False


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
    one of the providers (401 otherwise); a request without one passes.

    ``clear_route_cache``: routes are chosen again after validation, so that
    routes can match the token's claims (``ClaimMatch``); Istio sets it on
    gateways, the only proxies where it allows claim-based routing."""

    providers: tuple[JwtProvider, ...]
    clear_route_cache: bool = False


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """The workload policy a virtual host enforces, sent with its routes (RDS).

    The connection manager always runs the JWT and RBAC filters with a fixed
    configuration; what they enforce rides on the virtual host, so a policy
    change is a route change that reaches connections already open
    (``xds/build/route_policy.py``). ``authz`` holds the workload's policies for
    the port; ``jwt`` runs the connection manager's RequestAuthentication
    requirement (its providers stay in the listener's ``jwt_authn`` filter).
    ``require_mtls`` (the port is PeerAuthentication STRICT) denies requests on
    connections without a verified client certificate: new plaintext
    connections never reach these routes, but one opened while the port was
    PERMISSIVE still may."""

    authz: tuple[AuthzPolicy, ...] = ()
    jwt: bool = False
    require_mtls: bool = False
