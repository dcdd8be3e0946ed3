"""IST0161 InvalidGatewayCredential (Istio's ``gateway/secret.go``).

A Gateway server's ``credentialName`` (or one of its ``credentialNames``)
names a Secret that exists, in the namespace of the gateway workload (as
``validation.references`` looks it up), but cannot serve TLS: it holds no
certificate and key under either of the layouts translation reads
(``tls.crt``/``tls.key`` or ``cert``/``key``), its certificate is not PEM, is
expired or not yet valid, or its key is not a PEM private key of that
certificate. The gateway would then have no certificate for the server, and
its TLS handshakes fail. A missing Secret is IST0101 (``references``).

A ``kubernetes.io/tls`` Secret is already checked when it loads (a bad one
never loads, and then is missing); this matters for generic (``Opaque``)
Secrets, and for certificates that expired after the Secret was written.
Messages name keys, never values. Secrets read from the live control plane
come without their values (``cli.analyze_live``): they are not judged.
"""

from __future__ import annotations

import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from pilotfish.api.analysis.context import AnalysisContext, report
from pilotfish.api.analysis.output import LIVE_SOURCE
from pilotfish.api.core.pem import load_certificates
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.networking.gateway import GatewaySpec
from pilotfish.api.resource import Resource

__all__ = ["CODES", "check_gateway_credentials", "credential_problem"]

CODES = ("IST0161",)

_LAYOUTS = (("tls.crt", "tls.key"), ("cert", "key"))


def _public(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    data: bytes = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def credential_problem(spec: SecretSpec, now: datetime.datetime) -> str | None:
    """Why the Secret cannot serve TLS at ``now``, or None when it can."""
    try:
        data = spec.decoded()
    except ValueError as exc:
        return str(exc)
    layout = next(((c, k) for c, k in _LAYOUTS if data.get(c) and data.get(k)), None)
    if layout is None:
        return "it holds neither 'tls.crt' and 'tls.key' nor 'cert' and 'key'"
    cert_key, key_key = layout
    try:
        leaf = load_certificates(data[cert_key]).certificates[0]
    except ValueError:
        return f"{cert_key!r} is not a PEM certificate"
    if leaf.not_valid_after_utc < now:
        return f"the certificate in {cert_key!r} expired at {leaf.not_valid_after_utc.isoformat()}"
    if leaf.not_valid_before_utc > now:
        valid = leaf.not_valid_before_utc.isoformat()
        return f"the certificate in {cert_key!r} is not valid before {valid}"
    try:
        key = serialization.load_pem_private_key(data[key_key], password=None)
        matches = _public(key) == _public(leaf)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return f"{key_key!r} is not an unencrypted PEM private key"
    if not matches:
        return f"{key_key!r} does not match the certificate in {cert_key!r}"
    return None


def _workload_namespaces(ctx: AnalysisContext, r: Resource, spec: GatewaySpec) -> list[str]:
    selected = ctx.pods.selected(spec.selector, None) if spec.selector else []
    return sorted({p.namespace for p in selected}) or [r.namespace]


def check_gateway_credentials(ctx: AnalysisContext) -> list[Diagnostic]:
    secrets = {
        (r.namespace, r.name): s
        for r, s in ctx.of(SecretSpec)
        if r.source is None or r.source.file != LIVE_SOURCE
    }
    now = datetime.datetime.now(datetime.UTC)
    found: list[Diagnostic] = []
    for r, gw in ctx.of(GatewaySpec):
        namespaces = _workload_namespaces(ctx, r, gw)
        for i, server in enumerate(gw.servers):
            tls = server.tls
            if tls is None:
                continue
            names = [(f"spec.servers[{i}].tls.credentialName", tls.credential_name or "")]
            names += [
                (f"spec.servers[{i}].tls.credentialNames[{j}]", name)
                for j, name in enumerate(tls.credential_names)
            ]
            for path, name in names:
                for ns in namespaces:
                    secret = secrets.get((ns, name)) if name else None
                    problem = credential_problem(secret, now) if secret is not None else None
                    if problem is not None:
                        message = f"Secret {ns}/{name} cannot serve TLS: {problem}"
                        found.append(report(r, path, "IST0161", message))
    return found
