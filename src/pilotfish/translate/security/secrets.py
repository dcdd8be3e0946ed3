"""Reading certificate material from ``v1`` Secrets (``credentialName``).

Istio's layouts are accepted: a ``kubernetes.io/tls`` Secret (``tls.crt``,
``tls.key``, optionally ``ca.crt``), or generic keys (``cert``, ``key``,
``cacert``). A CA bundle may also live in a separate Secret named
``<name>-cacert``. Values never reach logs: only Secret names do.

Translation only *checks* what a Secret holds (a server needs a certificate
and a key, ``MUTUAL`` a CA) and refers to it by credential resource name
(``pilotfish.ir.credential_name``). The contents travel separately, as SDS
``Secret`` resources the control plane serves on the proxy's ADS stream
(``credential_secrets``), and only to a proxy whose verified identity is in
the Secret's namespace. ``referenced_credentials`` collects the names a
proxy's listeners and clusters use, so a proxy is offered exactly those.
As in Istio, a resource ``kubernetes://<ns>/<x>-cacert`` is the CA of Secret
``<x>`` when that holds one (its ``ca.crt`` or a ``<x>-cacert`` Secret's);
only otherwise is it the certificate of a Secret literally named ``<x>-cacert``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pilotfish.api.core.secret import SecretSpec
from pilotfish.ir import (
    CertSource,
    Cluster,
    CredentialSecret,
    DownstreamTls,
    Listener,
    UpstreamTls,
    credential_namespace,
)
from pilotfish.ir.security import CA_SUFFIX
from pilotfish.model.snapshot import Snapshot

__all__ = [
    "CredentialMaterial",
    "credential_material",
    "credential_secrets",
    "referenced_credentials",
    "split_credential_name",
]

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


def split_credential_name(namespace: str, credential: str) -> tuple[str, str]:
    """``(namespace, name)`` of a ``credentialName``: ``name`` is in ``namespace``
    (the proxy's), ``other/name`` names its namespace explicitly."""
    ns, sep, name = credential.partition("/")
    return (ns, name) if sep else (namespace, credential)


def _secret_of(snapshot: Snapshot, resource_name: str) -> CredentialSecret | None:
    namespace = credential_namespace(resource_name)
    if namespace is None:
        return None
    name = resource_name.partition("//")[2].partition("/")[2]
    if name.endswith(CA_SUFFIX):
        base = name[: -len(CA_SUFFIX)]
        material = credential_material(snapshot, namespace, base)
        if material is not None and material.ca_pem:
            return CredentialSecret(resource_name, ca_pem=material.ca_pem)
    material = credential_material(snapshot, namespace, name)
    if material is None or not (material.cert_pem and material.key_pem):
        return None
    return CredentialSecret(resource_name, cert_pem=material.cert_pem, key_pem=material.key_pem)


def credential_secrets(snapshot: Snapshot, names: Iterable[str]) -> tuple[CredentialSecret, ...]:
    """The contents of the credential resources ``names``, sorted by name; a name
    whose Secret (or the part it designates) does not exist is left out."""
    found = (_secret_of(snapshot, n) for n in sorted(set(names)))
    return tuple(s for s in found if s is not None)


def _names_of(*sources: CertSource | None) -> Iterable[str]:
    return (s.credential for s in sources if s is not None and s.credential)


def _tls_names(tls: DownstreamTls | UpstreamTls | None) -> Iterable[str]:
    if isinstance(tls, DownstreamTls):
        return _names_of(tls.server_cert, tls.trusted_ca)
    if isinstance(tls, UpstreamTls):
        return _names_of(tls.client_cert, tls.trusted_ca)
    return ()


def referenced_credentials(resources: Iterable[Listener | Cluster]) -> frozenset[str]:
    """Every credential resource name the TLS settings of ``resources`` use."""
    names: set[str] = set()
    for res in resources:
        if isinstance(res, Listener):
            chains = (*res.filter_chains, res.default_chain)
            for chain in chains:
                if chain is not None:
                    names.update(_tls_names(chain.tls))
        else:
            names.update(_tls_names(res.tls))
            names.update(_tls_names(res.auto_mtls))
    return frozenset(names)
