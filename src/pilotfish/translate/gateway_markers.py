"""Annotations the Gateway API converter puts on the Istio Gateways it derives.

They carry what a Gateway API Gateway says and an Istio Gateway cannot, from
the converter (``translate.gateway_api``) to the gateway proxy's translation
(``translate.security.gateway_tls``, ``translate.clusters``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACCEPT_UNTRUSTED_ANNOTATION", "BACKEND_CLIENT_CERT_ANNOTATION"]

#: Its ``OPTIONAL_MUTUAL`` servers let a client certificate that does not verify
#: through (the Gateway API's ``AllowInsecureFallback``).
ACCEPT_UNTRUSTED_ANNOTATION: Final = "pilotfish.io/accept-untrusted-client-certificates"
#: The Secret (in the Gateway's namespace) whose certificate the gateway proxy
#: presents to BackendTLSPolicy backends (``spec.tls.backend.clientCertificateRef``).
BACKEND_CLIENT_CERT_ANNOTATION: Final = "pilotfish.io/backend-client-certificate"
