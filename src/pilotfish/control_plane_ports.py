"""The control plane's well-known ports (Istio's numbers where Istio has one).

- ``XDS_PORT`` 15010: xDS in plain text, for loopback and development only
  (Istio's 15010).
- ``XDS_MTLS_PORT`` 15011: xDS over mutual TLS. A proxy must present a
  certificate issued by the mesh CA, and its node must claim that
  certificate's identity. Istio served xDS over mTLS on 15011 before it folded
  xDS into 15012.
- ``CA_PORT`` 15012: the mesh CA over server-authenticated TLS. Agents that
  have no certificate yet ask for one here with their pod's token (Istio's
  ``CA_ADDR`` default ``istiod:15012``).
- ``HTTP_API_PORT`` 15014: the configuration API, ``/metrics`` and debug pages.
"""

from __future__ import annotations

__all__ = ["CA_PORT", "HTTP_API_PORT", "XDS_MTLS_PORT", "XDS_PORT"]

XDS_PORT = 15010
XDS_MTLS_PORT = 15011
CA_PORT = 15012
HTTP_API_PORT = 15014
