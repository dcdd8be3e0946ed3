from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_testing import Loader
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.api.core.secret import REDACTED, SecretSpec, redact_document
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.loader import LoadResult, load_file
from pilotfish.api.validation.references import check_references

# A value that must never show up in any diagnostic, message or repr.
CANARY = "hunter2-canary-value"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _pair(*, days: int = 1, offset_days: int = 0) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=offset_days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(days=1))
        .not_valid_after(start + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    return _pair()


def _secret(body: str, name: str = "creds") -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: web}}\n{body}"


def _problems(result: LoadResult) -> dict[str, tuple[bool, str]]:
    return {d.field: (d.is_error, d.message) for d in result.diagnostics}


def _assert_no_leak(diagnostics: tuple[Diagnostic, ...] | list[Diagnostic], *values: str) -> None:
    text = "\n".join(d.format() for d in diagnostics) + repr(diagnostics)
    for value in (CANARY, *values):
        assert value not in text


def test_top_level_fields_become_the_spec(load: Loader) -> None:
    result = load(
        _secret(
            f"type: Opaque\ndata:\n  token: {b64(CANARY)}\n  both: {b64('old')}\n"
            "stringData:\n  user: admin\n  both: new\nimmutable: true\n"
        )
    )
    assert result.diagnostics == ()
    (secret,) = result.resources
    spec = secret.spec
    assert isinstance(spec, SecretSpec)
    assert spec.immutable is True and spec.string_data == {"user": "admin", "both": "new"}
    assert spec.decoded() == {"token": CANARY.encode(), "both": b"new", "user": b"admin"}
    assert (secret.api_version, secret.key.namespace, secret.name) == ("v1", "web", "creds")


def test_type_defaults_to_opaque_and_line_breaks_in_base64_are_ignored(load: Loader) -> None:
    encoded = b64("x" * 100)
    wrapped = encoded[:40] + "\n" + encoded[40:]
    result = load(_secret("data:\n  blob: |\n    " + wrapped.replace("\n", "\n    ") + "\n"))
    assert result.diagnostics == ()
    spec = result.resources[0].spec
    assert isinstance(spec, SecretSpec)
    assert spec.type == "Opaque" and spec.decoded() == {"blob": b"x" * 100}


def test_repr_hides_values() -> None:
    spec = SecretSpec(data={"token": b64(CANARY)}, string_data={"pw": CANARY})
    for text in (repr(spec), str(spec)):
        assert CANARY not in text and b64(CANARY) not in text
        assert "token" in text and REDACTED in text


def test_decoded_names_the_key_not_the_value() -> None:
    spec = SecretSpec(data={"token": CANARY + "!"})
    with pytest.raises(ValueError, match="token") as info:
        spec.decoded()
    assert CANARY not in str(info.value)


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (f"data: {{token: '{CANARY}!'}}", "data.token", "value of key 'token' is not valid base64"),
        ("spec: {data: {}}", "spec", "unknown field"),
        ("data: {token: 5}", "data.token", "must be a string"),
        ("data: [a]", "data", "must be a mapping"),
        ("immutable: maybe", "immutable", "true or false"),
        (f"data: {{'bad key': '{b64(CANARY)}'}}", "data.bad key", "invalid key 'bad key'"),
        (f"data: {{token: '{REDACTED}'}}", "data.token", "placeholder"),
        (f"stringData: {{token: '{REDACTED}'}}", "stringData.token", "placeholder"),
        (f"colour: {CANARY}", "colour", "unknown field"),
    ],
)
def test_errors_never_show_values(load: Loader, body: str, field: str, fragment: str) -> None:
    result = load(_secret(body + "\n"))
    assert not result.resources
    problems = _problems(result)
    assert field in problems, problems
    is_error, message = problems[field]
    assert is_error and fragment in message, message
    _assert_no_leak(result.diagnostics)


def test_error_line_points_at_the_key(load: Loader) -> None:
    result = load(_secret(f"data:\n  ok: {b64('a')}\n  tls.crt: '{CANARY}!'\n"))
    (d,) = result.diagnostics
    assert d.field == "data['tls.crt']"
    assert d.source is not None and d.source.line == 6


def test_tls_secret_valid(load: Loader, pair: tuple[bytes, bytes]) -> None:
    cert, key = pair
    body = (
        f"type: kubernetes.io/tls\ndata:\n  tls.crt: {b64(cert)}\n  tls.key: {b64(key)}\n"
        f"  ca.crt: {b64(cert)}\n"
    )
    result = load(_secret(body))
    assert result.diagnostics == ()
    spec = result.resources[0].spec
    assert isinstance(spec, SecretSpec) and spec.decoded()["tls.key"] == key


def test_tls_secret_in_string_data(load: Loader, pair: tuple[bytes, bytes]) -> None:
    cert, key = pair
    indent = "\n    "
    body = (
        "type: kubernetes.io/tls\nstringData:\n"
        f"  tls.crt: |{indent}{cert.decode().strip().replace(chr(10), indent)}\n"
        f"  tls.key: |{indent}{key.decode().strip().replace(chr(10), indent)}\n"
    )
    assert load(_secret(body)).diagnostics == ()


def _tls_problems(
    load: Loader, crt: bytes | None, key: bytes | None, ca: bytes | None = None
) -> dict[str, tuple[bool, str]]:
    lines = ["type: kubernetes.io/tls", "data:"]
    for name, value in (("tls.crt", crt), ("tls.key", key), ("ca.crt", ca)):
        if value is not None:
            lines.append(f"  {name}: {b64(value)}")
    if len(lines) == 2:
        lines[1] = "data: {}"
    result = load(_secret("\n".join(lines) + "\n"))
    for value in (crt, key, ca):
        if value:
            _assert_no_leak(result.diagnostics, value.decode(errors="replace"), b64(value))
    return _problems(result)


def test_tls_secret_needs_both_keys(load: Loader) -> None:
    problems = _tls_problems(load, None, None)
    assert problems == {"data": (True, "a kubernetes.io/tls Secret needs key 'tls.key'")}
    # Both messages share the field; both are reported.
    result = load(_secret("type: kubernetes.io/tls\ndata: {}\n"))
    assert sorted(d.message for d in result.diagnostics) == [
        "a kubernetes.io/tls Secret needs key 'tls.crt'",
        "a kubernetes.io/tls Secret needs key 'tls.key'",
    ]


def test_tls_secret_bad_pem(load: Loader) -> None:
    secret_text = f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n-----END PRIVATE KEY-----\n".encode()
    problems = _tls_problems(load, b"not a certificate " + CANARY.encode(), secret_text, b"junk")
    assert problems == {
        "data['tls.crt']": (True, "'tls.crt' is not a PEM certificate (chain)"),
        "data['tls.key']": (True, "'tls.key' is not an unencrypted PEM private key"),
        "data['ca.crt']": (True, "'ca.crt' is not a PEM certificate (chain)"),
    }


def test_tls_secret_encrypted_key(load: Loader, pair: tuple[bytes, bytes]) -> None:
    cert, _ = pair
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    problems = _tls_problems(load, cert, key)
    assert problems["data['tls.key']"][1] == "'tls.key' is not an unencrypted PEM private key"


def test_tls_secret_key_must_match_certificate(load: Loader, pair: tuple[bytes, bytes]) -> None:
    cert, _ = pair
    _, other_key = _pair()
    problems = _tls_problems(load, cert, other_key)
    assert problems == {
        "data['tls.key']": (True, "'tls.key' does not match the certificate in 'tls.crt'")
    }


def test_tls_secret_expired_certificate_warns(load: Loader) -> None:
    cert, key = _pair(days=1, offset_days=-10)
    problems = _tls_problems(load, cert, key)
    (field,) = problems
    is_error, message = problems[field]
    assert field == "data['tls.crt']" and not is_error and "expired at" in message


def test_redact_document() -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(CANARY), "tls.key": b64(CANARY)},
        "stringData": {"pw": CANARY},
    }
    out = redact_document(doc)
    assert out == {
        **doc,
        "data": {"tls.crt": REDACTED, "tls.key": REDACTED},
        "stringData": {"pw": REDACTED},
    }
    assert doc["stringData"] == {"pw": CANARY}  # the input is not changed
    built = redact_document({"kind": "Secret", "spec": {"data": {"k": CANARY}}})
    assert built["spec"] == {"data": {"k": REDACTED}}
    other = {"kind": "Service", "data": {"k": "v"}}
    assert redact_document(other) == other


def _gateway(credential: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: web}\n"
        "spec:\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n"
        f"    hosts: ['*']\n    tls: {{mode: SIMPLE, credentialName: {credential}}}\n"
    )


@pytest.fixture
def secret_and_gateways(load: Loader, pair: tuple[bytes, bytes]) -> Iterator[LoadResult]:
    cert, key = pair
    body = f"type: kubernetes.io/tls\ndata:\n  tls.crt: {b64(cert)}\n  tls.key: {b64(key)}\n"
    yield load(_secret(body) + "---\n" + _gateway("creds"))


def test_gateway_credential_references(load: Loader, secret_and_gateways: LoadResult) -> None:
    assert secret_and_gateways.ok and len(secret_and_gateways.resources) == 2
    assert check_references(list(secret_and_gateways.resources)) == []
    missing = load(_gateway("ghost"))
    found = check_references([*secret_and_gateways.resources[:1], *missing.resources])
    assert [(d.field, d.is_error, d.message) for d in found] == [
        ("spec.servers[0].tls.credentialName", False, "Secret web/ghost does not exist")
    ]


@pytest.mark.filterwarnings("error")
def test_a_certificate_with_a_nonpositive_serial_is_a_warning_not_a_library_warning() -> None:
    # Istio's analyzer input holds such a certificate (Secret expired-secret); the
    # builder here refuses to make one. The library's deprecation warning would say
    # nothing to the user: validation names the Secret's key instead.
    path = Path(__file__).parents[2] / "testdata/istio-analyzers/gateway-secrets-validation.yaml"
    result = load_file(str(path))
    serial = [d for d in result.diagnostics if "serial number" in d.message]
    assert [(d.field, d.is_error) for d in serial] == [("data['tls.crt']", False)]
    assert "expired-secret" in serial[0].format() and "RFC 5280" in serial[0].message
