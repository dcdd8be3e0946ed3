"""Gateway API conformance tests of a Gateway's ``spec.tls``, ported from upstream's Go
(see ``cases``).

- Frontend client-certificate validation
  (``gateway-with-clientcertificate-validation*.go``,
  ``gateway-invalid-default-frontend-client-certificate-validation.go``,
  ``gateway-with-invalid-clientcertificate-validation.go``): HTTPS requests
  to 443 (the default validation) and 8443 (the per-port one), each with the
  client certificate of the suite's ``tls-validity-checks`` CAs. A
  certificate of the wrong CA must be refused (upstream's
  ``MakeTLSRequestAndExpectEventuallyConsistentFailureResponse``: any
  round-trip error passes, any answer fails), unless the mode is
  ``AllowInsecureFallback``, where every request, with the wrong certificate
  or none, gets through. Listener conditions are checked with their reasons
  (upstream's ``GatewayListenerMustHaveConditions``), Gateway conditions with
  every condition observing the generation (``GatewayMustHaveLatestConditions``).
- The backend client certificate (``gateway-tls-backend-client-certificate.go``,
  ``gateway-invalid-tls-backend-configuration.go``): the Gateway presents
  ``tls-checks-client-certificate`` to a TLS backend that asks for one, and
  the backend echoes the certificate it saw; bad refs are the Gateway's
  ``ResolvedRefs: False`` with the spec's reasons while it stays Accepted.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from cases import INFRA, V1, V2, Case, Expect
from cases_status import CaseRun
from cases_tls import CONDITION_DEADLINE, _must_have
from suite_tls import SUITE

from polling import poll

GROUP = "apis/gateway.networking.k8s.io/v1"
_FEATURES = ("Gateway", "HTTPRoute", "GatewayFrontendClientCertificateValidation")
_BACKEND_FEATURES = ("Gateway", "HTTPRoute", "BackendTLSPolicy", "GatewayBackendClientCertificate")
_ANY = ""
Want = tuple[str, str, str]  # condition type, status, reason ("" any reason)


def _pair(which: str) -> tuple[bytes, bytes]:
    suite = SUITE[0]
    pair = suite.client if which == "default" else suite.per_port_client
    assert pair is not None
    return pair.cert_pem, pair.key_pem


def _gateway(run: CaseRun, name: str) -> dict[str, Any]:
    return dict(run.api.get(f"{GROUP}/namespaces/{INFRA}/gateways/{name}") or {})


def _has(conditions: list[dict[str, Any]], want: Want) -> bool:
    kind, status, reason = want
    return any(
        (c.get("type"), c.get("status")) == (kind, status) and reason in ("", c.get("reason"))
        for c in conditions
    )


def _latest(gateway: dict[str, Any]) -> bool:
    generation = int((gateway.get("metadata") or {}).get("generation") or 1)
    conditions = (gateway.get("status") or {}).get("conditions") or []
    return bool(conditions) and all(c.get("observedGeneration") == generation for c in conditions)


def _gateway_has(run: CaseRun, name: str, wants: tuple[Want, ...]) -> bool:
    gateway = _gateway(run, name)
    conditions = (gateway.get("status") or {}).get("conditions") or []
    return _latest(gateway) and all(_has(conditions, w) for w in wants)


def _listener_has(run: CaseRun, name: str, listener: str, wants: tuple[Want, ...]) -> bool:
    for ls in (_gateway(run, name).get("status") or {}).get("listeners") or []:
        if ls.get("name") == listener:
            return all(_has(ls.get("conditions") or [], w) for w in wants)
    return False


def _gateway_conditions(gateways: dict[str, tuple[Want, ...]]) -> Any:
    """A step: each Gateway's conditions, all observing its generation."""

    def step(run: CaseRun) -> str | None:
        for name, wants in gateways.items():
            what = ", ".join("/".join(w) for w in wants)
            poll(partial(_gateway_has, run, name, wants), f"Gateway {name}: {what}", 60)
        return None

    return step


def _listener_conditions(gateway: str, listeners: dict[str, tuple[Want, ...]]) -> Any:
    """A step: upstream's GatewayListenerMustHaveConditions for each listener."""

    def step(run: CaseRun) -> str | None:
        for listener, wants in listeners.items():
            what = ", ".join("/".join(w) for w in wants)
            poll(
                partial(_listener_has, run, gateway, listener, wants),
                f"Gateway {gateway} listener {listener}: {what}",
                CONDITION_DEADLINE,
            )
        return None

    return step


def _tls(host: str, port: int, client: str, backend: str = "") -> Expect:
    """An HTTPS request to ``port`` with the ``client`` certificate ("" none);
    without ``backend`` it must be refused."""
    cert = _pair(client) if client else None
    if not backend:
        return Expect("/", host=host, https=True, tls_port=port, client_cert=cert, refused=True)
    return Expect("/", host=host, https=True, tls_port=port, client_cert=cert, backend=backend)


_READY: tuple[Want, ...] = (
    ("ResolvedRefs", "True", _ANY),
    ("Accepted", "True", _ANY),
    ("Programmed", "True", _ANY),
)


def _no_ca(reason: str) -> tuple[Want, ...]:
    return (
        ("ResolvedRefs", "False", reason),
        ("Accepted", "False", "NoValidCACertificate"),
        ("Programmed", "False", _ANY),
    )


def _resolved(*routes: str) -> tuple[tuple[str, str, str, str, str], ...]:
    return tuple((INFRA, r, "ResolvedRefs", "True", "") for r in routes)


_DEFAULT_ROUTES = (
    "client-certificate-validation-https-test",
    "client-certificate-validation-https-test-no-hostname",
)
_FALLBACK_ROUTES = (
    "client-cert-validation-insecure-fallback-test",
    "client-cert-validation-insecure-fallback-test-no-hostname",
)
_INVALID_BACKEND = {
    "gateway-client-certificate-nonexistent-secret": "InvalidClientCertificateRef",
    "gateway-client-certificate-unsupported-group": "InvalidClientCertificateRef",
    "gateway-client-certificate-unsupported-kind": "InvalidClientCertificateRef",
    "gateway-client-certificate-malformed-secret": "InvalidClientCertificateRef",
    "gateway-client-certificate-missing-reference-grant": "RefNotPermitted",
}
_CLIENT_CERT_GATEWAY = "gateway-tls-backend-client-certificate"
_CLIENT_CERT_BACKEND = "tls-backend-with-client-cert-validation"


def _backend_client_cert_statuses(run: CaseRun) -> str | None:
    """The policy Accepted at the Gateway, and the Gateway's ResolvedRefs True."""
    policy = "gateway-tls-backend-client-certificate-test"
    _must_have(run, policy, _CLIENT_CERT_GATEWAY, ("Accepted", "True", ""))
    wants = (("ResolvedRefs", "True", "ResolvedRefs"),)
    return _gateway_conditions({_CLIENT_CERT_GATEWAY: wants})(run)


def _checks_client_pem() -> bytes:
    pair = SUITE[0].checks_client
    assert pair is not None
    return pair.cert_pem


GATEWAY_TLS_CASES: tuple[Case, ...] = (
    Case(
        "GatewayFrontendClientCertificateValidation",
        False,
        ("gateway-with-clientcertificate-validation.yaml",),
        "client-validation-default",
        tuple((INFRA, r) for r in _DEFAULT_ROUTES),
        (
            _tls("example.org", 443, "default", V1),
            _tls("example.org", 443, "per-port"),
            _tls("second-example.org", 8443, "per-port", V2),
            _tls("second-example.org", 8443, "default"),
        ),
        conditions=_resolved(*_DEFAULT_ROUTES),
        features=_FEATURES,
    ),
    Case(
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        False,
        ("gateway-with-clientcertificate-validation-insecure-fallback.yaml",),
        "client-validation-insecure-fallback",
        tuple((INFRA, r) for r in _FALLBACK_ROUTES),
        (
            _tls("example.org", 443, "default", V1),
            _tls("example.org", 443, "per-port", V1),
            _tls("example.org", 443, "", V1),
            _tls("second-example.org", 8443, "per-port", V2),
            _tls("second-example.org", 8443, "default", V2),
            _tls("second-example.org", 8443, "", V2),
        ),
        conditions=_resolved(*_FALLBACK_ROUTES),
        features=(*_FEATURES, "GatewayFrontendClientCertificateValidationInsecureFallback"),
        step=_gateway_conditions(
            {
                "client-validation-insecure-fallback": (
                    ("InsecureFrontendValidationMode", "True", "ConfigurationChanged"),
                )
            }
        ),
    ),
    Case(
        "GatewayFrontendInvalidDefaultClientCertificateValidation",
        False,
        ("gateway-invalid-default-frontend-client-certificate-validation.yaml",),
        "invalid-default-client-validation-config",
        ((INFRA, "invalid-default-client-validation-config"),),
        (
            Expect("/", host="example.org", backend=V1),
            _tls("example.org", 443, ""),
        ),
        features=_FEATURES,
        step=_listener_conditions(
            "invalid-default-client-validation-config",
            {"http": _READY, "https": _no_ca("InvalidCACertificateRef")},
        ),
    ),
    Case(
        "GatewayInvalidFrontendClientCertificateValidation",
        False,
        ("gateway-with-invalid-clientcertificate-validation.yaml",),
        "",
        (),
        features=(*_FEATURES, "ReferenceGrant"),
        step=_listener_conditions(
            "gateway-with-invalid-client-cert-validation",
            {
                "https": _READY,
                "https-unresolved": _no_ca("InvalidCACertificateRef"),
                "https-invalid-kind": _no_ca("InvalidCACertificateKind"),
                "https-grant-missing": _no_ca("RefNotPermitted"),
            },
        ),
    ),
    Case(
        "GatewayInvalidTLSBackendConfiguration",
        False,
        ("gateway-invalid-tls-backend-configuration.yaml",),
        "",
        (),
        features=_BACKEND_FEATURES,
        step=_gateway_conditions(
            {
                name: (("ResolvedRefs", "False", reason), ("Accepted", "True", "Accepted"))
                for name, reason in _INVALID_BACKEND.items()
            }
        ),
    ),
    Case(
        "GatewayTLSBackendClientCertificate",
        False,
        ("gateway-tls-backend-client-certificate.yaml",),
        _CLIENT_CERT_GATEWAY,
        ((INFRA, _CLIENT_CERT_GATEWAY),),
        (
            Expect(
                "/",
                host="abc.example.com",
                backend=_CLIENT_CERT_BACKEND,
                seen_sni="abc.example.com",
                seen_client_cert=_checks_client_pem(),
            ),
        ),
        conditions=_resolved(_CLIENT_CERT_GATEWAY),
        features=_BACKEND_FEATURES,
        step=_backend_client_cert_statuses,
    ),
)
