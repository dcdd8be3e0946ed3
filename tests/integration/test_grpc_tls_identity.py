"""What grpc-python's own TLS tells a handler about its client, with real handshakes.

The xDS mTLS port relies on these facts of the pinned grpcio: with
``require_client_auth=True`` a handler's ``auth_context()`` holds the verified
leaf (``x509_pem_cert``) and ``ssl`` as transport; with server-only TLS a
client's certificate is never asked for, so it never reaches the handler.
That second fact is why the CA (clients without a certificate) and xDS
(clients that must show one) listen on different ports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pilotfish.ca import CONTROL_PLANE_DNS_NAME, CertificateAuthority, SpiffeId
from pilotfish.xds.server.peer_identity import peer_from_auth_context
from pilotfish.xds.server.tls import (
    TlsServerConfig,
    mtls_server_credentials,
    server_tls_credentials,
)

IDENTITY = SpiffeId("cluster.local", "default", "bookinfo")
METHOD = "/test.Identity/Who"


def _client(authority: CertificateAuthority) -> tuple[bytes, bytes]:
    """(key PEM, chain PEM) of a workload certificate for ``IDENTITY``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(IDENTITY.uri)]), True
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    issued = authority.sign_csr(csr, IDENTITY)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, "".join(issued.chain_pem).encode()


async def _who(request: bytes, context: Any) -> bytes:
    auth = context.auth_context()
    peer = peer_from_auth_context(auth)
    return json.dumps(
        {
            "transport": [v.decode() for v in auth.get("transport_security_type", ())],
            "pem": [v.decode() for v in auth.get("x509_pem_cert", ())],
            "uris": list(peer.uri_sans),
            "has_cert": peer.certificate is not None,
        }
    ).encode()


Serve = Callable[[Any], Any]


@pytest.fixture
def authority() -> CertificateAuthority:
    return CertificateAuthority.create_root("cluster.local")


@pytest.fixture
async def serve(authority: CertificateAuthority) -> AsyncIterator[Serve]:
    servers: list[Any] = []
    server_pair = authority.issue_server_cert((CONTROL_PLANE_DNS_NAME,), ("127.0.0.1",))
    config = TlsServerConfig(
        cert_chain_pem="".join(server_pair.issued.chain_pem).encode(),
        key_pem=server_pair.key_pem,
        root_pem=authority.root_pem.encode(),
    )

    async def start(make_credentials: Any) -> str:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(_who)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Identity", {"Who": handler}),)
        )
        port = server.add_secure_port("127.0.0.1:0", make_credentials(config))
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(0)


async def _call(target: str, root_pem: str, client: tuple[bytes, bytes] | None) -> dict[str, Any]:
    creds = grpc.ssl_channel_credentials(root_pem.encode(), *(client or (None, None)))
    options = [("grpc.ssl_target_name_override", CONTROL_PLANE_DNS_NAME)]
    async with grpc.aio.secure_channel(target, creds, options=options) as channel:
        answer = await channel.unary_unary(METHOD)(b"", timeout=10)
    result: dict[str, Any] = json.loads(answer)
    return result


async def test_mtls_handlers_see_the_verified_leaf(
    serve: Serve, authority: CertificateAuthority
) -> None:
    target = await serve(mtls_server_credentials)
    client = _client(authority)
    who = await _call(target, authority.root_pem, client)
    assert who["transport"] == ["ssl"]
    leaf = x509.load_pem_x509_certificate(client[1])
    [pem] = who["pem"]
    assert x509.load_pem_x509_certificate(pem.encode()) == leaf
    assert who["uris"] == [IDENTITY.uri]


async def test_mtls_refuses_a_client_without_certificate(
    serve: Serve, authority: CertificateAuthority
) -> None:
    target = await serve(mtls_server_credentials)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(target, authority.root_pem, None)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_server_tls_never_sees_a_client_certificate(
    serve: Serve, authority: CertificateAuthority
) -> None:
    target = await serve(server_tls_credentials)
    for client in (None, _client(authority)):
        who = await _call(target, authority.root_pem, client)
        assert who["transport"] == ["ssl"]
        assert who["pem"] == [] and not who["has_cert"]
