"""HTTP/2 requests of the conformance cases: h2c with prior knowledge, and h2 over TLS.

Upstream's round tripper sends ``H2C_PRIOR_KNOWLEDGE`` requests with Go's
``http2.Transport`` over a plain connection, and ``H2`` ones over TLS with the
suite's certificate as the only CA and the case's server name as SNI; the
``:authority`` is the request's host. Each request here is one connection, as
upstream makes a transport per request; what makes a misdirected request is
an SNI that does not cover the ``:authority``, whether the connection is new
or reused.
"""

from __future__ import annotations

import socket
import ssl

from cases import Expect
from harness import REQUEST_TIMEOUT, Answer, ServerCert

from h2client import H2Client


def send_h2c(address: str, port: int, expect: Expect) -> Answer:
    """``expect`` as HTTP/2 with prior knowledge to ``address:port``."""
    client = H2Client(socket.create_connection((address, port), timeout=REQUEST_TIMEOUT))
    return _exchange(client, expect)


def send_h2_tls(address: str, port: int, expect: Expect, cert: ServerCert) -> Answer:
    """``expect`` as HTTP/2 over TLS (ALPN ``h2`` only), SNI ``expect.server_name`` (else
    its host), trusting the suite's certificate alone; the presented certificate must
    be that one (see ``harness.send_tls`` on hostname checks)."""
    ctx = ssl.create_default_context(cafile=str(cert.pem_file))
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((address, port), timeout=REQUEST_TIMEOUT)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=expect.server_name or expect.host or None)
    except BaseException:
        raw.close()
        raise
    if sock.getpeercert(binary_form=True) != cert.der:
        sock.close()
        raise OSError("the gateway presented another certificate than the suite's")
    if sock.selected_alpn_protocol() != "h2":
        sock.close()
        raise OSError(f"the gateway chose ALPN {sock.selected_alpn_protocol()!r}, not h2")
    return _exchange(H2Client(sock, scheme="https"), expect)


def _exchange(client: H2Client, expect: Expect) -> Answer:
    try:
        answer = client.request(
            expect.host or "example.com", expect.path, expect.method, expect.request_headers()
        )
        return Answer(answer.status, answer.headers, answer.body)
    finally:
        client.close()
