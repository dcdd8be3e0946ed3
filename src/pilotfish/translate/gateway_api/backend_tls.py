"""BackendTLSPolicy -> DestinationRules that originate TLS to the targeted Services.

Theory of operation: each targeted Service (``group: ""``, ``kind: Service``,
in the policy's namespace; ``sectionName`` names one of its ports) gets one
DestinationRule in the policy's namespace, exported everywhere, whose TLS
settings are ``SIMPLE`` with the policy's ``hostname`` as SNI and as the
expected certificate name (or its ``subjectAltNames``): a policy without
``sectionName`` sets the Service's TLS, one with a ``sectionName`` that
port's (``portLevelSettings``), so both kinds apply side by side. Two
policies for the same Service and section conflict (GEP-713): the older
(``creationTimestamp``, then namespace/name) applies, the other is
``Accepted: False, Conflicted``. The CA comes from:

- ``caCertificateRefs``: ConfigMaps whose ``ca.crt`` holds certificates
  (another kind is ``InvalidKind``; a missing ConfigMap, key or certificate is
  ``InvalidCACertificateRef``; with no valid ref the policy is ``Accepted:
  False, NoValidCACertificate`` and no DestinationRule is made, so nothing
  connects without the CA). Pilotfish serves CAs to proxies as Secrets over
  SDS, so the converter derives a Secret (``<policy>-<configmap>-ca-gwapi``)
  holding the valid refs' certificates and names it, qualified with the
  policy's namespace, as the DestinationRule's ``credentialName``. A CA
  alone is public: the xDS server serves it to verified proxies of every
  namespace (``xds.server.secret_access``), so gateways anywhere validate.
- ``wellKnownCACertificates: System``: the system bundle
  (``SYSTEM_CA_BUNDLE``).

Status follows the policy-attachment convention: ``ancestors`` are the
Gateways whose routes send traffic to a targeted Service, each with
Accepted and ResolvedRefs.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509

from pilotfish.api.core.config_map import ConfigMapSpec
from pilotfish.api.core.secret import SecretSpec
from pilotfish.api.core.service import ServiceSpec
from pilotfish.api.diagnostics import Diagnostic
from pilotfish.api.gateway_api.common import GROUP
from pilotfish.api.gateway_api.policies import BackendTLSPolicySpec
from pilotfish.api.networking.common import PortSelector
from pilotfish.api.networking.destination_rule import (
    ClientTLSSettings,
    DestinationRuleSpec,
    PortTrafficPolicy,
    TrafficPolicy,
)
from pilotfish.api.resource import Resource, ResourceKey
from pilotfish.api.validation.findings import Findings
from pilotfish.translate.gateway_api.derived import derived, safe_name
from pilotfish.translate.gateway_api.index import ConfigIndex
from pilotfish.translate.gateway_api.status import Condition, conditions

__all__ = ["SYSTEM_CA_BUNDLE", "convert_backend_tls"]

#: The system's CA bundle (Debian/Ubuntu path), for ``wellKnownCACertificates: System``.
SYSTEM_CA_BUNDLE: Final = "/etc/ssl/certs/ca-certificates.crt"


def _holds_certificate(pem: str) -> bool:
    """Whether ``pem`` holds at least one X.509 certificate (an empty or garbled
    ``ca.crt`` is no CA at all)."""
    try:
        return bool(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError:
        return False


def _ca_bundle(
    policy: Resource, spec: BackendTLSPolicySpec, config_maps: dict[tuple[str, str], Resource]
) -> tuple[str, str, Condition | None]:
    """(the valid refs' certificates as one PEM bundle, the first valid ConfigMap's
    name, the ResolvedRefs failure of the first invalid ref or None)."""
    pems: list[str] = []
    first = ""
    failed: Condition | None = None
    for ref in spec.validation.ca_certificate_refs:
        if ref.group != "" or ref.kind != "ConfigMap":
            failed = failed or Condition(
                "ResolvedRefs",
                False,
                "InvalidKind",
                f"caCertificateRef {ref.group or 'core'}/{ref.kind}: only ConfigMaps",
            )
            continue
        cm = config_maps.get((policy.namespace, ref.name))
        data = cm.spec.data if cm is not None and isinstance(cm.spec, ConfigMapSpec) else {}
        if not _holds_certificate(data.get("ca.crt", "")):
            failed = failed or Condition(
                "ResolvedRefs",
                False,
                "InvalidCACertificateRef",
                f"ConfigMap {policy.namespace}/{ref.name} has no certificate under key ca.crt",
            )
            continue
        pems.append(data["ca.crt"].strip() + "\n")
        first = first or ref.name
    return "".join(pems), first, failed


def _ca_secret(
    policy: Resource, spec: BackendTLSPolicySpec, config_maps: dict[tuple[str, str], Resource]
) -> tuple[Resource | None, Condition | None]:
    """The derived Secret holding the policy's CAs (None when no ref is valid), and
    the ResolvedRefs failure of an invalid ref."""
    bundle, first, failed = _ca_bundle(policy, spec, config_maps)
    if not bundle:
        return None, failed
    encoded = base64.b64encode(bundle.encode()).decode()
    secret = derived(
        "Secret",
        "v1",
        policy.namespace,
        safe_name(policy.name, first, "ca"),
        SecretSpec(data={"ca.crt": encoded}),
        [policy],
    )
    return secret, failed


def _port_of(service: Resource | None, section: str | None) -> int | None:
    if service is None or section is None or not isinstance(service.spec, ServiceSpec):
        return None
    return next((p.port for p in service.spec.ports if p.name == section), None)


def _ancestors(
    resources: tuple[Resource, ...], namespace: str, services: set[str]
) -> list[dict[str, Any]]:
    """Gateways (as parentRefs) of the routes that send traffic to these Services."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for route in resources:
        if route.kind not in ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute"):
            continue
        spec: Any = route.spec
        refs = [b for rule in spec.rules for b in rule.backend_refs]
        if not any(
            b.kind == "Service"
            and (b.namespace or route.namespace) == namespace
            and b.name in services
            for b in refs
        ):
            continue
        for parent in spec.parent_refs:
            if parent.kind == "Gateway" and parent.group == GROUP:
                ns = parent.namespace or route.namespace
                found[(ns, parent.name)] = {
                    "group": GROUP,
                    "kind": "Gateway",
                    "namespace": ns,
                    "name": parent.name,
                }
    return [found[k] for k in sorted(found)]


@dataclass
class _Settled:
    """One policy's outcome: its TLS settings (None: no valid CA), derived objects,
    conditions' inputs and the Services it targets."""

    policy: Resource
    tls: ClientTLSSettings | None = None
    made: list[Resource] = field(default_factory=list)
    failed: Condition | None = None
    targets: set[str] = field(default_factory=set)
    conflicted: bool = False


def _settle(
    policy: Resource,
    index: ConfigIndex,
    config_maps: dict[tuple[str, str], Resource],
    findings: Findings,
) -> _Settled:
    spec = policy.spec
    assert isinstance(spec, BackendTLSPolicySpec)
    out = _Settled(policy)
    credential = None
    ca_file = None
    if spec.validation.ca_certificate_refs:
        secret, out.failed = _ca_secret(policy, spec, config_maps)
        if secret is not None:
            out.made.append(secret)
            # Qualified: a gateway in another namespace reads the policy's CA.
            credential = f"{policy.namespace}/{secret.name}"
    else:
        ca_file = SYSTEM_CA_BUNDLE
    if out.failed is not None:
        findings.warning(
            "spec.validation.caCertificateRefs", f"{out.failed.reason}: {out.failed.message}"
        )
    if credential is not None or ca_file is not None:
        sans = [s.hostname or s.uri or "" for s in spec.validation.subject_alt_names]
        out.tls = ClientTLSSettings(
            mode="SIMPLE",
            credential_name=credential,
            ca_certificates=ca_file,
            sni=spec.validation.hostname,
            subject_alt_names=sans or [spec.validation.hostname],
        )
    for i, target in enumerate(spec.target_refs):
        if target.group != "" or target.kind != "Service":
            findings.warning(f"spec.targetRefs[{i}]", "only Services can be targeted")
        elif index.services.get((policy.namespace, target.name)) is None:
            findings.warning(
                f"spec.targetRefs[{i}]", f"Service {policy.namespace}/{target.name} not found"
            )
        else:
            out.targets.add(target.name)
    return out


def _age(policy: Resource) -> tuple[str, str, str]:
    """GEP-713's conflict order: the oldest policy wins, then the first by namespace/name."""
    return (policy.metadata.creation_timestamp or "~", policy.namespace, policy.name)


def _destination_rules(settled: list[_Settled], index: ConfigIndex) -> list[Resource]:
    """One DestinationRule per targeted Service: the whole-Service policy's TLS, and
    each port named by a ``sectionName`` with its own. Of two valid policies for the
    same Service and section, the older wins; the other is marked conflicted."""
    claims: dict[tuple[str, str, str | None], _Settled] = {}
    for one in sorted(settled, key=lambda x: _age(x.policy)):
        if one.tls is None:
            continue  # fail closed: nothing that would connect without the CA
        spec = one.policy.spec
        assert isinstance(spec, BackendTLSPolicySpec)
        for target in spec.target_refs:
            if target.name not in one.targets:
                continue
            key = (one.policy.namespace, target.name, target.section_name)
            if key in claims and claims[key] is not one:
                one.conflicted = True
            else:
                claims[key] = one
    out: list[Resource] = []
    services = sorted({(ns, svc) for ns, svc, _ in claims})
    for namespace, svc in services:
        whole = claims.get((namespace, svc, None))
        ports = []
        sources = [whole.policy] if whole is not None and not whole.conflicted else []
        for (ns, name, section), one in sorted(claims.items(), key=lambda kv: str(kv[0])):
            if (ns, name) != (namespace, svc) or section is None or one.conflicted:
                continue
            port = _port_of(index.services.get((ns, name)), section)
            if port is not None:
                assert one.tls is not None
                ports.append(PortTrafficPolicy(port=PortSelector(number=port), tls=one.tls))
                sources.append(one.policy)
        tls = whole.tls if whole is not None and not whole.conflicted else None
        if not sources:
            continue
        rule = DestinationRuleSpec(
            host=index.service_host(namespace, svc),
            traffic_policy=TrafficPolicy(tls=tls, port_level_settings=ports),
            export_to=["*"],
        )
        name = safe_name(svc, "backendtlspolicy")
        out.append(
            derived("DestinationRule", "networking.istio.io/v1", namespace, name, rule, sources)
        )
    return out


def _conditions(one: _Settled) -> list[Condition]:
    resolved = one.failed or Condition("ResolvedRefs", True, "ResolvedRefs")
    if one.tls is None:
        accepted = Condition(
            "Accepted", False, "NoValidCACertificate", "no caCertificateRef is valid"
        )
    elif one.conflicted:
        accepted = Condition(
            "Accepted", False, "Conflicted", "an older BackendTLSPolicy targets the same port"
        )
    elif not one.targets:
        accepted = Condition("Accepted", False, "TargetNotFound", "no targeted Service exists")
    else:
        accepted = Condition("Accepted", True, "Accepted")
    return [accepted, resolved]


def convert_backend_tls(
    resources: tuple[Resource, ...], index: ConfigIndex
) -> tuple[list[Resource], dict[ResourceKey, Mapping[str, Any]], list[Diagnostic]]:
    config_maps = {(r.namespace, r.name): r for r in resources if r.kind == "ConfigMap"}
    settled: list[_Settled] = []
    diagnostics: list[Diagnostic] = []
    for policy in resources:
        if policy.kind != "BackendTLSPolicy":
            continue
        findings = Findings(policy)
        settled.append(_settle(policy, index, config_maps, findings))
        diagnostics.extend(findings.items)
    derived_objects = [made for one in settled for made in one.made]
    derived_objects += _destination_rules(settled, index)
    statuses: dict[ResourceKey, Mapping[str, Any]] = {}
    for one in settled:
        policy = one.policy
        ancestors = _ancestors(resources, policy.namespace, one.targets) or [
            {"group": "", "kind": "Service", "namespace": policy.namespace, "name": t.name}
            for t in policy.spec.target_refs  # type: ignore[attr-defined]
        ]
        statuses[policy.key] = {
            "ancestors": [
                {
                    "ancestorRef": ref,
                    "controllerName": index.default_controller,
                    "conditions": conditions(policy, _conditions(one)),
                }
                for ref in ancestors
            ]
        }
    return derived_objects, statuses, diagnostics
