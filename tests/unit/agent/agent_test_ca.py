"""A tiny mesh CA for the agent's unit tests, behind the real wire contract.

It stands in for the control plane's CA (another unit): TLS on 127.0.0.1:0
with a server certificate for ``pilotfish-control-plane``, the JSON-over-gRPC
``CreateCertificate`` method, tokens mapped to (namespace, service account),
and scripted failures (``fail_with``) to exercise retries and errors.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE = "pilotfish.ca.v1.CertificateService"
SERVER_NAME = "pilotfish-control-plane"


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass
class CaCall:
    csr: str
    token: str
    ttl_seconds: int | None


@dataclass
class FakeMeshCa:
    tokens: Mapping[str, tuple[str, str]]  # token -> (namespace, service account)
    trust_domain: str = "cluster.local"
    default_ttl: int = 3600
    # Status codes to answer with, one per call, before answering normally.
    fail_with: list[grpc.StatusCode] = field(default_factory=list)
    calls: list[CaCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
        now = datetime.datetime.now(datetime.UTC)
        self.root = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        self.root_pem = _pem(self.root)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    def _sign(self, public_key: Any, sans: list[x509.GeneralName], ttl: int) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.root.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(seconds=1))
            .not_valid_after(now + datetime.timedelta(seconds=ttl))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.root_key, hashes.SHA256())
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._sign(key.public_key(), [x509.DNSName(SERVER_NAME)], 3600)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return grpc.ssl_server_credentials([(key_pem, _pem(cert).encode("ascii"))])

    async def _create(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        request = json.loads(data)
        self.calls.append(
            CaCall(request["csr"], request.get("token", ""), request.get("ttl_seconds"))
        )
        if self.fail_with:
            code = self.fail_with.pop(0)
            await context.abort(code, f"scripted {code.name}")
        owner = self.tokens.get(request.get("token", ""))
        if owner is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown token")
        assert owner is not None
        csr = x509.load_pem_x509_csr(request["csr"].encode("ascii"))
        if not csr.is_signature_valid:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad CSR signature")
        expected = f"spiffe://{self.trust_domain}/ns/{owner[0]}/sa/{owner[1]}"
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        if uris != [expected]:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"CSR must name {expected}")
        ttl = min(int(request.get("ttl_seconds") or self.default_ttl), self.default_ttl)
        leaf = self._sign(csr.public_key(), [x509.UniformResourceIdentifier(expected)], ttl)
        return json.dumps(
            {
                "cert_chain": [_pem(leaf)],
                "root_cert": self.root_pem,
                "expires_at": int(leaf.not_valid_after_utc.timestamp()),
            }
        ).encode()

    async def start(self) -> int:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            self._create, request_deserializer=None, response_serializer=None
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"CreateCertificate": handler}),)
        )
        self.port = server.add_secure_port("127.0.0.1:0", self.server_credentials())
        await server.start()
        self._server = server
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None
