"""SPIFFE identities of mesh workloads: ``spiffe://<trust-domain>/ns/<ns>/sa/<sa>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

__all__ = ["SpiffeId", "uri_sans"]

# Kubernetes names are DNS labels/subdomains; trust domains are DNS-like names.
_NAME = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")
_URI = re.compile(rf"^spiffe://(?P<td>[^/]+)/ns/(?P<ns>{_NAME})/sa/(?P<sa>{_NAME})$")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A workload identity. ``str()`` and ``uri`` give the SPIFFE URI."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        if not _TRUST_DOMAIN.match(self.trust_domain):
            raise ValueError(f"invalid trust domain {self.trust_domain!r}")
        if not re.fullmatch(_NAME, self.namespace):
            raise ValueError(f"invalid namespace {self.namespace!r}")
        if not re.fullmatch(_NAME, self.service_account):
            raise ValueError(f"invalid service account {self.service_account!r}")

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Parse a SPIFFE URI of the mesh's form; ValueError otherwise."""
        match = _URI.match(uri)
        if match is None:
            raise ValueError(f"not a mesh SPIFFE id: {uri!r}")
        return cls(match["td"], match["ns"], match["sa"])


def uri_sans(cert: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """The URI subject alternative names of a certificate or CSR (empty if none)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in ext.value.get_values_for_type(x509.UniformResourceIdentifier)]
