"""Reading certificate material from ``v1`` Secrets (``credentialName``).

Istio's layouts are accepted: a ``kubernetes.io/tls`` Secret (``tls.crt``,
``tls.key``, optionally ``ca.crt``), or generic keys (``cert``, ``key``,
``cacert``). A CA bundle may also live in a separate Secret named
``<name>-cacert``. Values never reach logs: only Secret names do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pilotfish.api.core.secret import SecretSpec
from pilotfish.model.snapshot import Snapshot

__all__ = ["CredentialMaterial", "credential_material"]

log = logging.getLogger("pilotfish.translate")

_CERT_KEYS = ("tls.crt", "cert")
_KEY_KEYS = ("tls.key", "key")
_CA_KEYS = ("ca.crt", "cacert")


@dataclass(frozen=True, slots=True)
class CredentialMaterial:
    """PEM text from a Secret; a part the Secret does not hold is empty."""

    cert_pem: str = ""
    key_pem: str = ""
    ca_pem: str = ""


def _decoded(snapshot: Snapshot, namespace: str, name: str) -> dict[str, bytes] | None:
    for res in snapshot.of_kind("Secret"):
        if res.namespace == namespace and res.name == name:
            spec = res.spec
            assert isinstance(spec, SecretSpec)
            try:
                return spec.decoded()
            except ValueError as exc:
                log.warning("Secret %s/%s is unusable: %s", namespace, name, exc)
                return None
    return None


def _first_text(data: dict[str, bytes], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = data.get(key)
        if value:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return ""
    return ""


def credential_material(snapshot: Snapshot, namespace: str, name: str) -> CredentialMaterial | None:
    """The certificate, key and CA that ``credentialName: name`` designates in
    ``namespace``; ``None`` when neither the Secret nor its ``-cacert`` companion
    exists (or it cannot be decoded)."""
    main = _decoded(snapshot, namespace, name)
    companion = _decoded(snapshot, namespace, f"{name}-cacert")
    if main is None and companion is None:
        return None
    main = main or {}
    ca = _first_text(main, _CA_KEYS) or _first_text(companion or {}, _CA_KEYS)
    return CredentialMaterial(_first_text(main, _CERT_KEYS), _first_text(main, _KEY_KEYS), ca)
