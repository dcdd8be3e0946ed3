"""Gateway API conformance tests about TLS, ported from upstream's Go (see ``cases``).

- The BackendTLSPolicy tests (``backendtlspolicy*.go``): the Gateway
  originates TLS to the ``tls-backend`` pods (upstream's echo serving the
  suite's ``tls-checks-certificate`` on 8443, from a Secret volume), checked
  against the policy's CA ConfigMap and hostname or subjectAltNames. A
  request through a valid policy reaches the backend with the policy's
  hostname as TLS server name (upstream's ``ExpectedRequest.SNI``); one
  through a policy with the wrong hostname, SAN or CA fails. Policy statuses
  are read per ancestor Gateway, as ``BackendTLSPolicyMustHaveCondition``
  does (every condition observing the policy's generation).
- ``BackendTLSPolicyGRPCRoute``: the same through a GRPCRoute to the gRPC
  echo's TLS listener.

Steps that edit objects (the CA ConfigMap reconcile sequence, the
generation bump) are ``step`` functions, run after the statuses and before
the requests.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import yaml
from cases import INFRA, Case, Expect
from cases_grpc import GrpcCase, GrpcExpect
from cases_status import CaseRun

from polling import poll

GROUP = "apis/gateway.networking.k8s.io/v1"
TLS_BACKEND = "tls-backend"
_SAME = "same-namespace"
_HTTPS = "same-namespace-with-https-listener"
_HOST = "abc.example.com"
_TRUE = ("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs")
_NO_CA = (
    ("Accepted", "False", "NoValidCACertificate"),
    ("ResolvedRefs", "False", "InvalidCACertificateRef"),
)
#: How long a policy condition may take (upstream's HTTPRouteMustHaveCondition, 60 s).
CONDITION_DEADLINE = 60.0


def _policy(run: CaseRun, name: str) -> dict[str, Any]:
    return dict(run.api.get(f"{GROUP}/namespaces/{INFRA}/backendtlspolicies/{name}") or {})


def _latest(policy: dict[str, Any]) -> bool:
    """Every ancestor's conditions observe the policy's generation (upstream's
    ConditionsHaveLatestObservedGeneration)."""
    generation = int((policy.get("metadata") or {}).get("generation") or 1)
    ancestors = (policy.get("status") or {}).get("ancestors") or []
    return all(
        c.get("observedGeneration") == generation
        for a in ancestors
        for c in a.get("conditions") or []
    )


def _has(run: CaseRun, name: str, gateway: str, want: tuple[str, str, str]) -> bool:
    """BackendTLSPolicyMustHaveCondition: the ancestor ``gateway`` (in the infra
    namespace) has condition type/status/reason ("" reason: any)."""
    policy = _policy(run, name)
    if not _latest(policy):
        return False
    kind, status, reason = want
    for ancestor in (policy.get("status") or {}).get("ancestors") or []:
        ref = ancestor.get("ancestorRef") or {}
        if ref.get("name") != gateway or ref.get("namespace", INFRA) != INFRA:
            continue
        for cond in ancestor.get("conditions") or []:
            if (cond.get("type"), cond.get("status")) == (kind, status) and reason in (
                "",
                cond.get("reason"),
            ):
                return True
    return False


def _must_have(run: CaseRun, name: str, gateway: str, *wants: tuple[str, str, str]) -> None:
    for want in wants:
        poll(
            partial(_has, run, name, gateway, want),
            f"BackendTLSPolicy {name} ancestor {gateway}: {'/'.join(want)}",
            CONDITION_DEADLINE,
        )


def _apply_doc(run: CaseRun, doc: dict[str, Any], label: str) -> None:
    doc = {k: v for k, v in doc.items() if k != "status"}
    doc["metadata"] = {
        k: v for k, v in doc["metadata"].items() if k not in ("resourceVersion", "generation")
    }
    path = run.tmp / f"{label}.yaml"
    path.write_text(yaml.safe_dump(doc))
    run.apply(path)


def _config_map(name: str, ca: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": INFRA},
        "data": {"ca.crt": ca},
    }


def _steps(*steps: Callable[[CaseRun], str | None]) -> Callable[[CaseRun], str | None]:
    def run_all(run: CaseRun) -> str | None:
        for step in steps:
            why = step(run)
            if why is not None:
                return why
        return None

    return run_all


def _conditions(policies: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]]) -> Any:
    """A step waiting for each policy's conditions at its ancestor Gateway."""

    def step(run: CaseRun) -> str | None:
        for name, (gateway, wants) in policies.items():
            _must_have(run, name, gateway, *wants)
        return None

    return step


def reconcile_ca_config_map(run: CaseRun) -> str | None:
    """Upstream's "Changing the content of a ConfigMap used by BackendTLSPolicy as CA
    certificate should be reconciled": point ``reconcile-test`` at a ConfigMap that
    does not exist yet (False/False), create it with the shared CA (True/True),
    empty its ``ca.crt`` (False/False), restore it (True/True), restore the policy."""
    name, test_cm = "reconcile-test", "tls-checks-ca-certificate-reconcile-test"
    shared = run.api.get(f"api/v1/namespaces/{INFRA}/configmaps/tls-checks-ca-certificate")
    ca = str(((shared or {}).get("data") or {}).get("ca.crt") or "")
    if not ca:
        return "the suite's tls-checks-ca-certificate ConfigMap has no ca.crt"
    original = _policy(run, name)
    edited = yaml.safe_load(yaml.safe_dump(original))
    edited["spec"]["validation"]["caCertificateRefs"] = [
        {"group": "", "kind": "ConfigMap", "name": test_cm}
    ]
    _apply_doc(run, edited, "reconcile-policy")
    _must_have(run, name, _SAME, *_NO_CA)
    try:
        _apply_doc(run, _config_map(test_cm, ca), "reconcile-cm")
        _must_have(run, name, _SAME, *_TRUE)
        _apply_doc(run, _config_map(test_cm, ""), "reconcile-cm-empty")
        _must_have(run, name, _SAME, *_NO_CA)
        _apply_doc(run, _config_map(test_cm, ca), "reconcile-cm-restored")
        _must_have(run, name, _SAME, *_TRUE)
    finally:
        if run.delete is not None:
            path = run.tmp / "reconcile-cm.yaml"
            run.delete(path)
        _apply_doc(run, original, "reconcile-policy-restored")
    return None


def bump_policy_generation(run: CaseRun) -> str | None:
    """Upstream's BackendTLSPolicyObservedGenerationBump: the conditions observe the
    generation; a changed hostname bumps it, and Accepted (any reason) is True again
    with every condition observing the new one."""
    name = "observed-generation-bump"
    original = poll(
        lambda: (p := _policy(run, name)) and _latest(p) and (p.get("status") or {}) and p,
        f"BackendTLSPolicy {name} conditions observing its generation",
        CONDITION_DEADLINE,
    )
    before = int(original["metadata"].get("generation") or 1)
    edited = yaml.safe_load(yaml.safe_dump(original))
    edited["spec"]["validation"]["hostname"] = "foo.example.com"
    _apply_doc(run, edited, "generation-bump")
    _must_have(run, name, _SAME, ("Accepted", "True", ""))
    updated = _policy(run, name)
    if not _latest(updated):
        return "the conditions do not observe the policy's new generation"
    after = int(updated["metadata"].get("generation") or 1)
    return None if after != before else f"generation stayed {before} after a spec change"


def _ok(path: str, sni: str = _HOST, **kw: Any) -> Expect:
    return Expect(path, host=_HOST, backend=TLS_BACKEND, seen_sni=sni, **kw)


def _fails(path: str, host: str = _HOST) -> Expect:
    return Expect(path, host=host, failure=True)


def _five_hundred(path: str) -> Expect:
    return Expect(path, host=_HOST, statuses=(500, 502, 503))


_BTLS = ("Gateway", "HTTPRoute", "BackendTLSPolicy")
_SAN = (*_BTLS, "BackendTLSPolicySANValidation")
_ROUTE_RESOLVED = "ResolvedRefs", "True", ""


def _resolved(*routes: str) -> tuple[tuple[str, str, str, str, str], ...]:
    return tuple((INFRA, r, *_ROUTE_RESOLVED) for r in routes)


TLS_CASES: tuple[Case, ...] = (
    Case(
        "BackendTLSPolicy",
        False,
        ("backendtlspolicy.yaml",),
        _SAME,
        ((INFRA, "backendtlspolicy-reencrypt"), (INFRA, "backendtlspolicy")),
        (
            # Re-encrypt: HTTPS to the Gateway, TLS again to the backend.
            Expect(
                "/backendtlspolicy",
                host="https-listener.org",
                https=True,
                backend=TLS_BACKEND,
                seen_sni=_HOST,
                gateway=_HTTPS,
            ),
            _ok("/backendtlspolicy"),
            _fails("/backendtlspolicy-host-mismatch", host="abc.example.org"),
            _fails("/backendtlspolicy-cert-mismatch"),
        ),
        conditions=_resolved("backendtlspolicy-reencrypt", "backendtlspolicy"),
        features=_BTLS,
        step=_steps(
            _conditions(
                {
                    "normative-test": (_HTTPS, _TRUE),
                    "host-mismatch": (_SAME, _TRUE),
                    "cert-mismatch": (_SAME, _TRUE),
                    "reconcile-test": (_SAME, _TRUE),
                }
            ),
            _conditions({"normative-test": (_SAME, _TRUE)}),
            reconcile_ca_config_map,
        ),
    ),
    Case(
        "BackendTLSPolicyConflictResolution",
        False,
        ("backendtlspolicy-conflict-resolution.yaml",),
        _SAME,
        ((INFRA, "backendtlspolicy-conflict-resolution"),),
        (
            _ok("/backendtlspolicy-conflicted-without-section-name", "other.example.com"),
            _ok("/backendtlspolicy-conflicted-with-section-name", "other.example.com"),
            _ok("/backendtlspolicy-not-conflicted-with-section-name", "other.example.com"),
            _ok("/backendtlspolicy-not-conflicted-without-section-name"),
        ),
        conditions=_resolved("backendtlspolicy-conflict-resolution"),
        features=_BTLS,
        step=_conditions(
            {
                "conflicted-without-section-name-1": (_SAME, (_TRUE[0],)),
                "conflicted-without-section-name-2": (
                    _SAME,
                    (("Accepted", "False", "Conflicted"),),
                ),
                "conflicted-with-section-name-1": (_SAME, (_TRUE[0],)),
                "conflicted-with-section-name-2": (_SAME, (("Accepted", "False", "Conflicted"),)),
                "not-conflicted-with-section-name": (_SAME, (_TRUE[0],)),
                "not-conflicted-without-section-name": (_SAME, (_TRUE[0],)),
            }
        ),
    ),
    Case(
        "BackendTLSPolicyInvalidCACertificateRef",
        False,
        ("backendtlspolicy-invalid-ca-certificate-ref.yaml",),
        _SAME,
        ((INFRA, "backendtlspolicy-invalid-ca-certificate-ref"),),
        (
            _five_hundred("/backendtlspolicy-nonexistent-ca-certificate-ref"),
            _five_hundred("/backendtlspolicy-malformed-ca-certificate-ref"),
        ),
        features=_BTLS,
        step=_conditions(
            {
                "nonexistent-ca-certificate-ref": (_SAME, _NO_CA),
                "malformed-ca-certificate-ref": (_SAME, _NO_CA),
            }
        ),
    ),
    Case(
        "BackendTLSPolicyInvalidKind",
        False,
        ("backendtlspolicy-invalid-kind.yaml",),
        _SAME,
        ((INFRA, "backendtlspolicy-invalid-kind-test"),),
        (_five_hundred("/backendtlspolicy-invalid-kind"),),
        features=_BTLS,
        step=_conditions(
            {
                "invalid-kind": (
                    _SAME,
                    (
                        ("Accepted", "False", "NoValidCACertificate"),
                        ("ResolvedRefs", "False", "InvalidKind"),
                    ),
                )
            }
        ),
    ),
    Case(
        "BackendTLSPolicyObservedGenerationBump",
        False,
        ("backendtlspolicy-observed-generation-bump.yaml",),
        _SAME,
        (),
        features=_BTLS,
        step=bump_policy_generation,
    ),
    Case(
        "BackendTLSPolicySANValidation",
        False,
        ("backendtlspolicy-san.yaml",),
        _SAME,
        ((INFRA, "backendtlspolicy-san-test"),),
        (
            _ok("/backendtlspolicy-san-dns"),
            _fails("/backendtlspolicy-san-dns-mismatch"),
            _ok("/backendtlspolicy-san-uri"),
            _fails("/backendtlspolicy-san-uri-mismatch"),
            _ok("/backendtlspolicy-multiple-sans"),
            _fails("/backendtlspolicy-multiple-mismatch-sans"),
        ),
        conditions=_resolved("backendtlspolicy-san-test"),
        features=_SAN,
        step=_conditions(
            {
                name: (_SAME, (_TRUE[0],))
                for name in (
                    "san-dns",
                    "san-dns-mismatch",
                    "san-uri",
                    "san-uri-mismatch",
                    "multiple-sans",
                    "multiple-mismatch-sans",
                )
            }
        ),
    ),
)


def _grpc_policies(run: CaseRun) -> str | None:
    return _conditions(
        {
            "grpc-normative-test": (_SAME, _TRUE),
            "grpc-host-mismatch": (_SAME, _TRUE),
            "grpc-cert-mismatch": (_SAME, _TRUE),
        }
    )(run)


TLS_GRPC_CASES: tuple[GrpcCase, ...] = (
    GrpcCase(
        "BackendTLSPolicyGRPCRoute",
        False,
        ("backendtlspolicy-grpcroute.yaml",),
        _SAME,
        (
            (INFRA, "backendtlspolicy-grpcroute"),
            (INFRA, "backendtlspolicy-grpcroute-cert-mismatch"),
        ),
        (
            GrpcExpect(authority=_HOST, backend="grpc-infra-backend-v1"),
            GrpcExpect(method="EchoTwo", authority=_HOST, failure=True),
            GrpcExpect(authority="cert-mismatch.example.com", failure=True),
        ),
        step=_grpc_policies,
    ),
)
