"""What the destination's ``jwt_authn`` filter does with a request's token.

Theory of operation. Envoy's filter, as Pilotfish configures it
(``xds/build/jwt.py``: any provider, or no token at all), lets a request
without a token through, and rejects one with a token that no provider
accepts: 401 for a bad signature, an unknown issuer or an expired token, 403
``Audiences in Jwt are not allowed`` for a valid token of another audience.
Tokens are looked for where Envoy looks: each provider's ``from_headers`` and
``from_params``, else ``Authorization: Bearer`` and ``access_token``.

The JWKS is inline in the IR (the control plane fetched it), so RS256
signatures are verified here with the same keys Envoy has; other algorithms
cannot be checked and the verdict says it depends on the token. What Envoy
cannot know either (the clock) uses this machine's clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pilotfish import ir
from pilotfish.explain.request import ExplainRequest
from pilotfish.translate.security.jwt import FAKE_JWKS

__all__ = ["JwtResult", "check_jwt"]


@dataclass
class JwtResult:
    """``status``: what jwt_authn answers (None: the request goes on). ``claims``:
    the verified token's payload (None: no token). ``certain``: False when the
    signature could not be checked here."""

    status: int | None = None
    claims: dict[str, Any] | None = None
    certain: bool = True
    reasons: list[str] = field(default_factory=list)


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _find_token(provider: ir.JwtProvider, request: ExplainRequest) -> str | None:
    headers = provider.from_headers or (ir.JwtHeader("authorization", "Bearer "),)
    for h in headers:
        value = request.header(h.name)
        if value is not None and value.startswith(h.prefix):
            return value[len(h.prefix) :].strip()
    for param in provider.from_params or ("access_token",):
        value = request.query_param(param)
        if value:
            return value
    return None


def _verify_rs256(signing_input: bytes, signature: bytes, jwks: str, kid: str) -> bool | None:
    """True/False for an RS256 signature against the JWKS; None if no key fits."""
    try:
        keys = json.loads(jwks).get("keys", [])
    except (ValueError, AttributeError):
        return None
    candidates = [
        k for k in keys if k.get("kty") == "RSA" and (not kid or k.get("kid") in (kid, None))
    ]
    if not candidates:
        return False
    for key in candidates:
        try:
            n = int.from_bytes(_b64(key["n"]), "big")
            e = int.from_bytes(_b64(key["e"]), "big")
            public = rsa.RSAPublicNumbers(e, n).public_key()
            public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            return True
        except (InvalidSignature, KeyError, ValueError, binascii.Error):
            continue
    return False


def _audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    return [str(a) for a in aud] if isinstance(aud, list) else []


def check_jwt(authn: ir.JwtAuthn | None, request: ExplainRequest) -> JwtResult:
    """What jwt_authn decides for ``request`` (no filter: no token is read)."""
    if authn is None or not authn.providers:
        return JwtResult(reasons=["no RequestAuthentication applies: tokens are not read"])
    found = [(p, t) for p in authn.providers if (t := _find_token(p, request)) is not None]
    if not found:
        return JwtResult(reasons=["no token in the request: jwt_authn lets it through"])
    token = found[0][1]
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(_b64(head_b64))
        claims = json.loads(_b64(body_b64))
        signature = _b64(sig_b64)
    except (ValueError, binascii.Error):
        return JwtResult(401, reasons=["the token is not a well-formed JWT: 401"])
    if not isinstance(claims, dict) or not isinstance(header, dict):
        return JwtResult(401, reasons=["the token is not a well-formed JWT: 401"])
    issuer = claims.get("iss")
    provider = next((p for p, _ in found if p.issuer == issuer), None)
    if provider is None:
        return JwtResult(401, reasons=[f"no provider has issuer {issuer!r}: 401"])
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        return JwtResult(401, reasons=["the token has expired: 401"])
    certain = True
    reasons: list[str] = []
    if provider.jwks == FAKE_JWKS:
        why = f"{provider.name}'s JWKS was not fetched (yet): Envoy rejects every token, 401"
        return JwtResult(401, certain=False, reasons=[why])
    if header.get("alg") == "RS256" and provider.jwks:
        signing_input = f"{head_b64}.{body_b64}".encode()
        verified = _verify_rs256(
            signing_input, signature, provider.jwks, str(header.get("kid", ""))
        )
        if verified is False:
            return JwtResult(
                401, reasons=[f"the signature does not verify with {provider.name}'s JWKS: 401"]
            )
        if verified is None:
            certain = False
            reasons.append("the JWKS could not be read: the signature was not checked")
        else:
            reasons.append(f"signature verified with {provider.name}'s JWKS")
    else:
        certain = False
        reasons.append(
            f"{header.get('alg')!r} signatures are not checked here: assuming the token is valid"
        )
    if provider.audiences and not set(_audiences(claims)) & set(provider.audiences):
        return JwtResult(
            403,
            reasons=[
                *reasons,
                "the token's audience is not accepted: 403 (Audiences in Jwt are not allowed)",
            ],
        )
    reasons.append(
        f"token of {claims.get('iss')}/{claims.get('sub')} accepted by provider {provider.name}"
    )
    return JwtResult(None, claims, certain, reasons)
