"""RequestAuthentication -> IR ``JwtAuthn`` for one proxy.

Every ``jwtRules`` entry of every RequestAuthentication that applies to the
workload (``selection.selected_policies``) becomes one provider named
``<namespace>/<name>/<index>``. Keys come from the rule's inline ``jwks``, else
from the document the control plane fetched for its ``jwksUri``
(``Snapshot.jwks``). When neither gives a usable JWKS, the provider gets
``FAKE_JWKS``: a real RSA public key whose private key was discarded, so every
token of that issuer is rejected (Istio does the same) and Envoy still
accepts the configuration; a malformed inline JWKS would make Envoy reject
the whole listener.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pilotfish.api.resource import Resource
from pilotfish.api.security.request_authentication import JwtRule, RequestAuthenticationSpec
from pilotfish.ir.security import JwtAuthn, JwtHeader, JwtProvider
from pilotfish.model.snapshot import Snapshot
from pilotfish.translate.security.selection import selected_policies

__all__ = ["FAKE_JWKS", "REQUEST_AUTHENTICATION", "jwks_uris", "jwt_authn", "usable_jwks"]

REQUEST_AUTHENTICATION = "RequestAuthentication"

FAKE_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "kid": "pilotfish-reject-all",
                "alg": "RS256",
                "e": "AQAB",
                "n": (
                    "rzZqbJbfLMlEZ6f-sp9PLeZo393NdYw10bK0YgE9ObkWCsnJnSpRWX5rUWbFUFIDnMnQg0Aq"
                    "LGaoYwpkeUkwhlTzkfUMUYnN_hzPUNlCyF82_l8r6_6f0sKKQYOUauVc4X_8bk_lNMlQRdEt"
                    "8sCBayT4bqYYlLymUKasySK9VTZ5eNvXDzgS6WvXJ7L3o9DodrD1Nux5Bzt1i_57rL8IXTLP"
                    "2GWiKsl5NGnTKIoz6dBymrVrS4vKBbdPRC-EsloLd5OFlJWL5MB4AImgUx3kyWYQTVm_PDRq"
                    "tNb0GZgMsPitdopO-tNoH8g5vf5to9dOP0L0b9oyowdKqqkNSAUMuQ"
                ),
            }
        ]
    },
    sort_keys=True,
)

_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# Members each key type needs (as base64url strings) to be parsed by Envoy.
_REQUIRED = {"RSA": ("n", "e"), "EC": ("x", "y"), "OKP": ("x",), "oct": ("k",)}


def _b64url(text: Any) -> bool:
    return isinstance(text, str) and _B64URL.fullmatch(text) is not None and len(text) % 4 != 1


def usable_jwks(text: str) -> bool:
    """Whether ``text`` is a JWKS Envoy will load: a JSON object whose ``keys`` is a
    non-empty list of keys of a known type with their members present."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        return False
    for key in keys:
        if not isinstance(key, dict):
            return False
        required = _REQUIRED.get(str(key.get("kty", "")))
        if required is None or not all(_b64url(key.get(m)) for m in required):
            return False
    return True


def _jwks_for(rule: JwtRule, fetched: Mapping[str, str]) -> str:
    text = rule.jwks or fetched.get(rule.jwks_uri, "")
    return text if text and usable_jwks(text) else FAKE_JWKS


def _provider(resource: Resource, index: int, rule: JwtRule, snapshot: Snapshot) -> JwtProvider:
    return JwtProvider(
        name=f"{resource.namespace}/{resource.name}/{index}",
        issuer=rule.issuer,
        audiences=tuple(rule.audiences),
        jwks=_jwks_for(rule, snapshot.jwks),
        from_headers=tuple(JwtHeader(h.name, h.prefix) for h in rule.from_headers),
        from_params=tuple(rule.from_params),
        forward=rule.forward_original_token,
        output_payload_to_header=rule.output_payload_to_header,
    )


def jwt_authn(snapshot: Snapshot, namespace: str, labels: Mapping[str, str]) -> JwtAuthn | None:
    """The JWT providers a workload (``namespace``, ``labels``) enforces; None if none."""
    providers = []
    for resource in selected_policies(snapshot, REQUEST_AUTHENTICATION, namespace, labels):
        spec = resource.spec
        assert isinstance(spec, RequestAuthenticationSpec)
        for index, rule in enumerate(spec.jwt_rules):
            providers.append(_provider(resource, index, rule, snapshot))
    return JwtAuthn(tuple(providers)) if providers else None


def jwks_uris(resources: tuple[Resource, ...]) -> frozenset[str]:
    """Every ``jwksUri`` the RequestAuthentications among ``resources`` name without
    an inline ``jwks`` (what the control plane must fetch)."""
    uris: set[str] = set()
    for resource in resources:
        spec = resource.spec
        if resource.kind != REQUEST_AUTHENTICATION or not isinstance(
            spec, RequestAuthenticationSpec
        ):
            continue
        uris.update(r.jwks_uri for r in spec.jwt_rules if r.jwks_uri and not r.jwks)
    return frozenset(uris)
